"""/stocks/*: price, history (JSON or CSV), intraday, coverage, versions, multi-symbol bars, snapshots."""

from __future__ import annotations

from litestar import Controller, Request, get

from api.schemas import ErrorBody, documented
from api.state import Resources
from api.stocks import files, multi
from api.stocks.coverage import CoverageResponse, coverage_report
from api.stocks.history import HistoryQuery, bar_versions, history, intraday_session, resolution_date
from api.stocks.params import (
    ERRORS,
    MAX_FILE_LIMIT,
    AdjustmentQuery,
    AlignQuery,
    AsOfQuery,
    CoverageIntervalQuery,
    EndQuery,
    FileFormatQuery,
    FormatQuery,
    IntervalQuery,
    IntradayIntervalQuery,
    JsonLimitQuery,
    LimitQuery,
    OutputFormat,
    PageTokenQuery,
    PriceAsOfQuery,
    SortOrder,
    SortQuery,
    StartQuery,
    StoredIntervalQuery,
    SymbolPath,
    SymbolsQuery,
    TsQuery,
    choosing_date,
    instant,
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
from api.stocks.symbols import require_listed, require_listed_many, require_symbol, require_symbols
from market_data.adjustment import Adjustment
from market_data.records import Interval, utcnow
from market_data.timeframes import Align

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
            "it was observed, its provider, and whether the symbol's market is open now. Served from "
            "the API's latest-value cache, kept current by the live feed (never older than the store); "
            "with `as_of`, the price as stored at that instant, read from the store."
        ),
        responses={
            **ERRORS,
            404: documented(ErrorBody, description="Unknown symbol, or no data yet"),
        },
    )
    async def price(
        self, resources: Resources, symbol: SymbolPath, as_of: PriceAsOfQuery = None
    ) -> PriceResponse:
        sym, mic = await require_symbol(resources, symbol)
        at = instant(as_of, "as_of") if as_of is not None else None
        return await latest_price(resources, sym, mic, utcnow(), at)

    @get(
        "/{symbol:str}/history",
        operation_id="getHistory",
        summary="Historical bars of any timeframe (JSON pages, CSV or Parquet)",
        description=(
            "Bars whose start is in [start, end) (at most the timeframe's maximum span). A timeframe "
            "stored for the symbol is read as stored; any other (e.g. 1h or 1d of a symbol that stores "
            "1m bars) is built from the finest stored interval that divides it: session-aligned, one "
            "session's regular hours per 1d bar, each built bar marked `complete` or not with the "
            "number of `base_bars` it was made of (see the README's Timeframes section). With `start` "
            "and `sort=asc`: oldest first from `start`. Without `start`: the latest `limit` bars before "
            "`end` (oldest first), and each next page the `limit` bars before those. `sort=desc`: newest "
            "first. `next_page_token` continues the read (null on the last page) at the `as_of` of the "
            "first page. With `format=csv` (or `Accept: text/csv`) the same page comes as CSV, "
            "`pd.read_csv(url, parse_dates=['ts', 'as_of'])`; with `format=parquet` (or `Accept: "
            "application/vnd.apache.parquet`) as a Parquet file with typed columns, `pd.read_parquet(url)` "
            f"(a file's `limit` goes up to {MAX_FILE_LIMIT}; the next token is in the `X-Next-Page-Token` "
            "header). `adjustment=split|dividend|all` reads the bars adjusted by the corporate actions "
            "known at `as_of` (listed, with the set's `id`; files: `X-Adjustment`, `X-Adjustment-Id`)."
        ),
        responses={
            **ERRORS,
            200: documented(HistoryResponse, description="A page of bars (JSON), or a CSV or Parquet file"),
        },
        operation_class=files.BarFileOperation,
    )
    async def history(
        self,
        request: Request,
        resources: Resources,
        symbol: SymbolPath,
        interval: IntervalQuery = "1m",
        align: AlignQuery = Align.SESSION,
        start: StartQuery = None,
        end: EndQuery = None,
        limit: LimitQuery = 1000,
        as_of: AsOfQuery = None,
        sort: SortQuery = SortOrder.ASC,
        page_token: PageTokenQuery = None,
        format: FormatQuery = None,  # the public name of the query parameter
        adjustment: AdjustmentQuery = Adjustment.RAW,
    ) -> HistoryResponse | files.FileStream:
        fmt = files.response_format(request, format)
        as_file = fmt is not OutputFormat.JSON
        query = HistoryQuery(
            interval=interval,
            align=align,
            start=start,
            end=end,
            limit=limit,
            as_of=as_of,
            sort=sort,
            page_token=page_token,
            as_file=as_file,
            adjustment=adjustment,
        )
        listed = await require_listed(resources, symbol, on=resolution_date(query))
        page = await history(resources, listed, query)
        return files.file_response(page, fmt) if as_file else page.response()

    @get(
        "/{symbol:str}/intraday",
        operation_id="getIntraday",
        summary="Bars of the current or last session",
        description=(
            "The bars of today's session when the symbol's market is open or has traded today, else "
            "of the last session; with the session's open and close and whether the market is open now. "
            "Any intraday timeframe (1m-59m, 1h-23h): one not stored is built as on /history, the "
            "running bar marked incomplete. "
            "A crypto pair's session is the current UTC day. With `format=csv|parquet` the same bars as a "
            "file, the session in `X-Session-Open`, `X-Session-Close` and `X-Market-Open`."
        ),
        responses={
            **ERRORS,
            200: documented(
                IntradayResponse, description="The session's bars (JSON), or a CSV or Parquet file"
            ),
        },
        operation_class=files.BarFileOperation,
    )
    async def intraday(
        self,
        request: Request,
        resources: Resources,
        symbol: SymbolPath,
        interval: IntradayIntervalQuery = "1m",
        align: AlignQuery = Align.SESSION,
        format: FileFormatQuery = None,  # the public name of the query parameter
        adjustment: AdjustmentQuery = Adjustment.RAW,
    ) -> IntradayResponse | files.FileStream:
        fmt = files.response_format(request, format)
        listed = await require_listed(resources, symbol)
        session = await intraday_session(resources, listed, interval, align, adjustment)
        return session.response() if fmt is OutputFormat.JSON else files.intraday_file(session, fmt)

    @get(
        "/{symbol:str}/coverage",
        operation_id="getCoverage",
        summary="Stored, confirmed-empty, missing and queued bars per session",
        description=(
            "Per session in [start, end) (default: the 7 days before now; at most 93 days of intraday "
            "bars, 366 of daily): the bars the exchange calendar expects, how many are stored, "
            "confirmed empty (the provider reported no trades), missing, and missing but queued for "
            "backfill (inside a queued or running job), counted by the same gap code as the sweeps; `ranges` "
            "lists the bars not stored as runs per session and state, `revised` the stored bars with more "
            "than one version (see /versions), `backfills` the queued or running backfill jobs (no token "
            "needed). "
            "`interval` defaults to the symbol's finest stored interval; a timeframe that is built "
            "counts the stored interval it is built from (`counted`)."
        ),
        responses=ERRORS,
    )
    async def coverage(
        self,
        resources: Resources,
        symbol: SymbolPath,
        interval: CoverageIntervalQuery = None,
        start: StartQuery = None,
        end: EndQuery = None,
    ) -> CoverageResponse:
        listed = await require_listed(resources, symbol)
        return await coverage_report(resources, listed, interval, start, end, utcnow())

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
        interval: StoredIntervalQuery = Interval.M1,
    ) -> VersionsResponse:
        sym, _ = await require_symbol(resources, symbol)
        return await resources.reads.run(lambda db: bar_versions(db, sym, interval, ts))

    @get(
        "/bars",
        operation_id="getBarsMulti",
        summary="Bars of several symbols",
        description=(
            "Per symbol: the first `limit` bars from `start`, or without `start` the latest `limit` "
            "before `end`; oldest first. `truncated` lists the symbols with more bars in the range. "
            "Any timeframe, each symbol's bars read or built from its own stored intervals as on "
            "/history (`built_from` says which); a symbol that cannot be read at `interval` makes the "
            "request a 400 naming it. Unknown symbols make the whole request a 404 that lists them. With "
            "`format=csv|parquet` one file of the same rows, `symbol` first (symbols in the order asked, "
            "each oldest first), `as_of` in `X-As-Of` and `truncated` in `X-Truncated`."
        ),
        responses={
            **MANY_ERRORS,
            200: documented(
                MultiBarsResponse, description="Bars per symbol (JSON), or a CSV or Parquet file"
            ),
        },
        operation_class=files.BarFileOperation,
    )
    async def bars(
        self,
        request: Request,
        resources: Resources,
        symbols: SymbolsQuery,
        interval: IntervalQuery = "1m",
        align: AlignQuery = Align.SESSION,
        start: StartQuery = None,
        end: EndQuery = None,
        limit: JsonLimitQuery = 1000,
        as_of: AsOfQuery = None,
        format: FileFormatQuery = None,  # the public name of the query parameter
        adjustment: AdjustmentQuery = Adjustment.RAW,
    ) -> MultiBarsResponse | files.FileStream:
        fmt = files.response_format(request, format)
        result = await multi.multi_bars(
            resources,
            await require_listed_many(resources, symbols, on=choosing_date(start, end)),
            interval=interval,
            align=align,
            start=start,
            end=end,
            as_of=as_of,
            limit=limit,
            now=utcnow(),
            adjustment=adjustment,
        )
        return result.response() if fmt is OutputFormat.JSON else files.multi_bars_file(result, fmt)

    @get(
        "/snapshots",
        operation_id="getSnapshots",
        summary="Snapshots of several symbols",
        description=(
            "Per symbol: the latest quote, the latest 1m bar, the latest and the previous 1d bar "
            "(each null when none is stored) and whether its market is open now; from the API's "
            "latest-value cache like /price."
        ),
        responses=MANY_ERRORS,
    )
    async def snapshots(self, resources: Resources, symbols: SymbolsQuery) -> SnapshotsResponse:
        exchanges = await require_symbols(resources, symbols)
        return await multi.snapshots(resources, exchanges, utcnow())
