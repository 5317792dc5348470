"""/stocks/{symbol}/price and /stocks/{symbol}/history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api.errors import BadParameter, NotFound
from api.schemas import ErrorBody
from api.state import Resources
from api.stocks import queries
from api.stocks.schemas import BarOut, HistoryResponse, PriceResponse
from market_data import calendar
from market_data.records import Interval, ensure_utc, is_valid_symbol, utcnow

MAX_LIMIT = 10_000

SymbolPath = Annotated[
    str, Parameter(description="Ticker, e.g. AAPL, BRK.B, VOD.L (case-insensitive)", max_length=15)
]
ERRORS = {
    400: ResponseSpec(ErrorBody, description="A parameter is malformed; `parameter` names it"),
    404: ResponseSpec(ErrorBody, description="The symbol is not in the universe"),
}


def normalize_symbol(symbol: str) -> str:
    s = symbol.strip().upper()
    if not is_valid_symbol(s):
        raise BadParameter(
            "symbol: expected 1-15 characters of A-Z, 0-9, '.' or '-', starting with a letter or digit",
            parameter="symbol",
        )
    return s


async def require_symbol(resources: Resources, symbol: str) -> tuple[str, str]:
    """(symbol, exchange_mic) of a symbol in the universe; 404 otherwise."""
    s = normalize_symbol(symbol)
    row = await queries.symbol_info(resources.db, s)
    if row is None:
        raise NotFound(f"symbol: {s} is not in the universe", parameter="symbol")
    return s, row["exchange_mic"]


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
            404: ResponseSpec(ErrorBody, description="Unknown symbol, or no data yet"),
        },
    )
    async def price(self, resources: Resources, symbol: SymbolPath) -> PriceResponse:
        sym, mic = await require_symbol(resources, symbol)
        quote = await queries.latest_quote(resources.db, sym)
        best: PriceResponse | None = None
        market_open = calendar.is_open_at(mic, utcnow())
        if quote is not None:
            best = PriceResponse(
                symbol=sym,
                price=quote["last"],
                ts=quote["ts"],
                provider=quote["provider"],
                source="quote",
                bid=quote["bid"],
                ask=quote["ask"],
                exchange_mic=mic,
                market_open=market_open,
            )
        for bar in await queries.latest_bars(resources.db, sym):
            interval = Interval(bar["interval"])
            ended = bar["ts"] + interval.delta if interval.is_intraday else bar["ts"]
            if best is None or ended > best.ts:
                best = PriceResponse(
                    symbol=sym,
                    price=bar["close"],
                    ts=ended,
                    provider=bar["provider"],
                    source=f"bar:{interval.value}",
                    exchange_mic=mic,
                    market_open=market_open,
                )
        if best is None:
            raise NotFound(f"symbol: no price stored for {sym} yet", parameter="symbol")
        return best

    @get(
        "/{symbol:str}/history",
        operation_id="getHistory",
        summary="Historical bars",
        description=(
            "Bars in [start, end), oldest first. Without `start`, the latest `limit` bars before `end`. "
            "With `as_of`, each bar as it was known at that instant (point-in-time read)."
        ),
        responses=ERRORS,
    )
    async def history(
        self,
        resources: Resources,
        symbol: SymbolPath,
        interval: Annotated[Interval, Parameter(description="Bar interval")] = Interval.M1,
        start: Annotated[
            datetime | None, Parameter(description="Inclusive start (ISO 8601; UTC if no offset)")
        ] = None,
        end: Annotated[
            datetime | None, Parameter(description="Exclusive end (ISO 8601); default now")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Maximum bars returned")] = 1000,
        as_of: Annotated[
            datetime | None, Parameter(description="Point-in-time: versions known at this instant")
        ] = None,
    ) -> HistoryResponse:
        sym, _ = await require_symbol(resources, symbol)
        now = utcnow()
        end_ts = ensure_utc(end) if end else now
        start_ts = ensure_utc(start) if start else None
        if start_ts is not None and start_ts >= end_ts:
            raise BadParameter("end: must be after start", parameter="end")
        as_of_ts = ensure_utc(as_of) if as_of else None
        rows = await queries.history(resources.db, sym, interval, start_ts, end_ts, as_of_ts or now, limit)
        bars = [
            BarOut(
                ts=r["ts"],
                open=r["open"],
                high=r["high"],
                low=r["low"],
                close=r["close"],
                volume=r["volume"],
                vwap=r["vwap"],
                trade_count=r["trade_count"],
                provider=r["provider"],
                as_of=r["as_of"],
            )
            for r in rows
        ]
        return HistoryResponse(
            symbol=sym, interval=interval.value, count=len(bars), bars=bars, as_of=as_of_ts
        )
