"""/stocks/*: price, history (JSON pages or CSV), intraday, versions, multi-symbol bars, snapshots."""

from __future__ import annotations

from litestar import Controller, Request, get

from api.schemas import ErrorBody, documented
from api.state import Resources
from api.stocks import csv_export, multi
from api.stocks.history import bar_versions, history_page, intraday_session
from api.stocks.pagination import history_window
from api.stocks.params import (
    ERRORS,
    AsOfQuery,
    EndQuery,
    FormatQuery,
    IntervalQuery,
    IntradayInterval,
    IntradayIntervalQuery,
    LimitQuery,
    PageTokenQuery,
    SortOrder,
    SortQuery,
    StartQuery,
    SymbolPath,
    SymbolsQuery,
    TsQuery,
)
from api.stocks.price import latest_price
from api.stocks.schemas import (
    HistoryResponse,
    IntradayResponse,
    MultiBarsResponse,
    PriceResponse,
    SnapshotsResponse,
    VersionsResponse,
)
from api.stocks.symbols import require_symbol, require_symbols
from market_data.records import Interval, utcnow

MANY_ERRORS = {
    400: ERRORS[400],
    404: documented(ErrorBody, description="Symbols not in the universe; the detail lists every one"),
    503: ERRORS[503],
}


class StocksController(Controller):
    path = "/stocks"
    tags = ["stocks"]

    @get(
        "/{symbol:str}/price",
        operation_id="getPrice",
        summary="Latest price",
        description=(
            "The latest quote, or the latest bar's close when no newer quote exists; with the time "
            "it was observed, its provider, and whether the symbol's market is open now."
        ),
        responses={
            **ERRORS,
            404: documented(ErrorBody, description="Unknown symbol, or no data yet"),
        },
    )
    async def price(self, resources: Resources, symbol: SymbolPath) -> PriceResponse:
        sym, mic = await require_symbol(resources, symbol)
        return await latest_price(resources.db, sym, mic, utcnow())

    @get(
        "/{symbol:str}/history",
        operation_id="getHistory",
        summary="Historical bars (JSON pages or CSV)",
        description=(
            "Bars in [start, end) (at most the interval's maximum span). With `start` and `sort=asc`: "
            "oldest first from `start`. Without `start`: the latest `limit` bars before `end` (oldest "
            "first), and each next page the `limit` bars before those. `sort=desc`: newest first. "
            "`next_page_token` continues the read (null on the last page) at the `as_of` of the first "
            "page. With `Accept: text/csv` or `format=csv` the whole range streams as CSV "
            f"(at most {csv_export.MAX_CSV_ROWS} bars): `pd.read_csv(url, parse_dates=['ts'])`."
        ),
        responses={**ERRORS, 200: documented(HistoryResponse, description="A page of bars, or CSV")},
        operation_class=csv_export.HistoryOperation,
    )
    async def history(
        self,
        request: Request,
        resources: Resources,
        symbol: SymbolPath,
        interval: IntervalQuery = Interval.M1,
        start: StartQuery = None,
        end: EndQuery = None,
        limit: LimitQuery = 1000,
        as_of: AsOfQuery = None,
        sort: SortQuery = SortOrder.ASC,
        page_token: PageTokenQuery = None,
        format: FormatQuery = None,  # the public name of the query parameter
    ) -> HistoryResponse | csv_export.CsvStream:
        sym, _ = await require_symbol(resources, symbol)
        window = history_window(
            symbol=sym,
            interval=interval,
            sort=sort,
            start=start,
            end=end,
            as_of=as_of,
            page_token=page_token,
            now=utcnow(),
        )
        if csv_export.wants_csv(request, format):
            return await csv_export.csv_response(resources.db, window)
        return await history_page(resources.db, window, limit)

    @get(
        "/{symbol:str}/intraday",
        operation_id="getIntraday",
        summary="Bars of the current or last session",
        description=(
            "The bars of today's session when the symbol's market is open or has traded today, else "
            "of the last session; with the session's open and close and whether the market is open now. "
            "A crypto pair's session is the current UTC day."
        ),
        responses=ERRORS,
    )
    async def intraday(
        self, resources: Resources, symbol: SymbolPath, interval: IntradayIntervalQuery = IntradayInterval.M1
    ) -> IntradayResponse:
        sym, mic = await require_symbol(resources, symbol)
        return await intraday_session(resources.db, sym, mic, interval)

    @get(
        "/{symbol:str}/versions",
        operation_id="getBarVersions",
        summary="Every stored version of one bar",
        description=(
            "Each version of the bar starting at `ts` (provider, as_of, values), oldest first: a "
            "vendor's later correction (late trades) is a second version; `/history?as_of=` between "
            "two `as_of`s reads the earlier one."
        ),
        responses={
            **ERRORS,
            404: documented(ErrorBody, description="Unknown symbol, or no bar stored at `ts`"),
        },
    )
    async def versions(
        self,
        resources: Resources,
        symbol: SymbolPath,
        ts: TsQuery,
        interval: IntervalQuery = Interval.M1,
    ) -> VersionsResponse:
        sym, _ = await require_symbol(resources, symbol)
        return await bar_versions(resources.db, sym, interval, ts)

    @get(
        "/bars",
        operation_id="getBarsMulti",
        summary="Bars of several symbols",
        description=(
            "Per symbol: the first `limit` bars from `start`, or without `start` the latest `limit` "
            "before `end`; oldest first. `truncated` lists the symbols with more bars in the range. "
            "Unknown symbols make the whole request a 404 that lists them."
        ),
        responses=MANY_ERRORS,
    )
    async def bars(
        self,
        resources: Resources,
        symbols: SymbolsQuery,
        interval: IntervalQuery = Interval.M1,
        start: StartQuery = None,
        end: EndQuery = None,
        limit: LimitQuery = 1000,
        as_of: AsOfQuery = None,
    ) -> MultiBarsResponse:
        exchanges = await require_symbols(resources, symbols)
        return await multi.multi_bars(
            resources.db,
            list(exchanges),
            interval=interval,
            start=start,
            end=end,
            as_of=as_of,
            limit=limit,
            now=utcnow(),
        )

    @get(
        "/snapshots",
        operation_id="getSnapshots",
        summary="Snapshots of several symbols",
        description=(
            "Per symbol: the latest quote, the latest 1m bar, the latest and the previous 1d bar "
            "(each null when none is stored) and whether its market is open now."
        ),
        responses=MANY_ERRORS,
    )
    async def snapshots(self, resources: Resources, symbols: SymbolsQuery) -> SnapshotsResponse:
        return await multi.snapshots(resources.db, await require_symbols(resources, symbols), utcnow())
