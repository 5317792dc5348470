"""GET /stocks/{symbol}/price: the latest quote, or the latest bar's close when it is newer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import asyncpg

from api.errors import NotFound
from api.state import AppResources
from api.stocks import queries
from api.stocks.schemas import PriceResponse
from market_data import calendar
from market_data.records import Interval


class Observed(NamedTuple):
    """A price and where it came from: a quote, or the close of the newest bar of an interval."""

    price: float
    ts: datetime
    provider: str
    source: str
    bid: float | None = None
    ask: float | None = None


def bar_close(interval: str, ts: datetime, close: float, provider: str) -> Observed:
    """A bar's close, observed when the bar ends; a daily bar is stamped with its session date."""
    iv = Interval(interval)
    ended = ts + iv.delta if iv.is_intraday else ts
    return Observed(close, ended, provider, f"bar:{iv.value}")


def price_response(symbol: str, mic: str, now: datetime, seen: Iterable[Observed]) -> PriceResponse:
    """The most recent of `seen` (the first wins a tie: the quote).

    Raises:
        NotFound: nothing is stored for `symbol` yet.
    """
    best: Observed | None = None
    for x in seen:
        if best is None or x.ts > best.ts:
            best = x
    if best is None:
        raise NotFound(f"symbol: no price stored for {symbol} yet", parameter="symbol")
    return PriceResponse(
        symbol=symbol,
        price=best.price,
        ts=best.ts,
        provider=best.provider,
        source=best.source,
        bid=best.bid,
        ask=best.ask,
        exchange_mic=mic,
        market_open=calendar.is_open_at(mic, now),
    )


async def stored_price(
    db: asyncpg.Pool, symbol: str, mic: str, now: datetime, as_of: datetime | None = None
) -> PriceResponse:
    """The price from Postgres: the newest quote and bars stored at `as_of` (default: now)."""
    seen: list[Observed] = []
    quote = await queries.latest_quote(db, symbol, as_of)
    if quote is not None:
        seen.append(
            Observed(quote["last"], quote["ts"], quote["provider"], "quote", quote["bid"], quote["ask"])
        )
    for bar in await queries.latest_bars(db, symbol, as_of):
        seen.append(bar_close(bar["interval"], bar["ts"], bar["close"], bar["provider"]))
    return price_response(symbol, mic, now, seen)


async def latest_price(
    resources: AppResources, symbol: str, mic: str, now: datetime, as_of: datetime | None = None
) -> PriceResponse:
    """The most recently observed price of `symbol`: a quote at its time, a bar at its end.

    From the latest-value cache (`api/stocks/latest.py`) when it can answer; with `as_of`, or
    while the live feed is down, from Postgres (the standby when it serves).

    Raises:
        NotFound: nothing is stored for `symbol` yet (at `as_of`).
    """
    if as_of is None:
        held = await resources.latest.get([symbol])
        if held is not None:
            entry = held[symbol]
            seen: list[Observed] = []
            if (q := entry.quote) is not None:
                seen.append(Observed(q.last, q.ts, q.provider, "quote", q.bid, q.ask))
            for interval in Interval:
                if (b := entry.bar(interval.value)) is not None:
                    seen.append(bar_close(interval.value, b.ts, b.close, b.provider))
            return price_response(symbol, mic, now, seen)
    return await resources.reads.run(lambda db: stored_price(db, symbol, mic, now, as_of), as_of=as_of)
