"""GET /stocks/{symbol}/price: the latest quote, or the latest bar's close when it is newer."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from api.errors import NotFound
from api.stocks import queries
from api.stocks.schemas import PriceResponse
from market_data import calendar
from market_data.records import Interval


async def latest_price(db: asyncpg.Pool, symbol: str, mic: str, now: datetime) -> PriceResponse:
    """The most recently observed price of `symbol`: a quote at its time, a bar at its end.

    Raises:
        NotFound: nothing is stored for `symbol` yet.
    """
    quote = await queries.latest_quote(db, symbol)
    best: PriceResponse | None = None
    market_open = calendar.is_open_at(mic, now)
    if quote is not None:
        best = PriceResponse(
            symbol=symbol,
            price=quote["last"],
            ts=quote["ts"],
            provider=quote["provider"],
            source="quote",
            bid=quote["bid"],
            ask=quote["ask"],
            exchange_mic=mic,
            market_open=market_open,
        )
    for bar in await queries.latest_bars(db, symbol):
        interval = Interval(bar["interval"])
        # a bar's close is observed when the bar ends; a daily bar is stamped with its session date
        ended = bar["ts"] + interval.delta if interval.is_intraday else bar["ts"]
        if best is None or ended > best.ts:
            best = PriceResponse(
                symbol=symbol,
                price=bar["close"],
                ts=ended,
                provider=bar["provider"],
                source=f"bar:{interval.value}",
                exchange_mic=mic,
                market_open=market_open,
            )
    if best is None:
        raise NotFound(f"symbol: no price stored for {symbol} yet", parameter="symbol")
    return best
