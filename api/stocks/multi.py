"""Reads over many symbols at once: /stocks/bars and /stocks/snapshots (one query each per kind)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from api.errors import BadParameter
from api.schemas import optional_quantity
from api.stocks import queries
from api.stocks.params import EARLIEST, bar_range, instant
from api.stocks.schemas import (
    BarOut,
    MultiBarsResponse,
    QuoteOut,
    Snapshot,
    SnapshotsResponse,
    bars_out,
)
from market_data import calendar
from market_data.records import Interval

MAX_TOTAL_BARS = 100_000
"""Most bars one /stocks/bars response may hold: `limit` x number of symbols."""


async def multi_bars(
    db: asyncpg.Pool,
    symbols: list[str],
    *,
    interval: Interval,
    start: datetime | None,
    end: datetime | None,
    as_of: datetime | None,
    limit: int,
    now: datetime,
) -> MultiBarsResponse:
    """Per symbol: the first `limit` bars from `start`, or without `start` the latest `limit` before `end`."""
    if limit * len(symbols) > MAX_TOTAL_BARS:
        raise BadParameter(
            f"limit: {limit} bars x {len(symbols)} symbols is more than the {MAX_TOTAL_BARS} bars "
            "one response may hold; lower limit or ask for fewer symbols",
            parameter="limit",
        )
    lo, hi = bar_range(interval, start, end, now)
    at = instant(as_of, "as_of") if as_of is not None else now
    tail = lo is None
    rows = await queries.multi_bars(
        db, symbols, interval, lo or EARLIEST, hi, at, limit + 1, newest_first=tail
    )
    grouped: dict[str, list[asyncpg.Record]] = {s: [] for s in symbols}
    for r in rows:
        grouped[r[0]].append(r[1:])
    truncated = [s for s, g in grouped.items() if len(g) > limit]
    out: dict[str, list[BarOut]] = {}
    for s, g in grouped.items():
        del g[limit:]
        if tail:
            g.reverse()
        out[s] = bars_out(g)
    return MultiBarsResponse(
        interval=interval.value,
        start=lo,
        end=hi,
        as_of=at,
        limit=limit,
        bars=out,
        truncated=truncated,
    )


async def snapshots(db: asyncpg.Pool, exchanges: dict[str, str], now: datetime) -> SnapshotsResponse:
    """Latest quote, latest 1m bar, latest and previous 1d bar of each symbol (null when missing)."""
    symbols = list(exchanges)
    async with db.acquire() as conn:
        bar_rows = await queries.snapshot_bars(conn, symbols)
        quote_rows = await queries.latest_quotes(conn, symbols)
    minute: dict[str, BarOut] = {}
    daily: dict[str, list[BarOut]] = {}
    for r in bar_rows:
        (bar,) = bars_out([r[2:]])
        if r["interval"] == "1m":
            minute[r["symbol"]] = bar
        else:
            daily.setdefault(r["symbol"], []).append(bar)  # newest first
    quotes = {
        r["symbol"]: QuoteOut(
            ts=r["ts"],
            last=r["last"],
            bid=r["bid"],
            ask=r["ask"],
            bid_size=optional_quantity(r["bid_size"]),
            ask_size=optional_quantity(r["ask_size"]),
            provider=r["provider"],
        )
        for r in quote_rows
    }
    out = {}
    for s, mic in exchanges.items():
        days = daily.get(s, [])
        out[s] = Snapshot(
            symbol=s,
            exchange_mic=mic,
            market_open=calendar.is_open_at(mic, now),
            latest_quote=quotes.get(s),
            minute_bar=minute.get(s),
            daily_bar=days[0] if days else None,
            prev_daily_bar=days[1] if len(days) > 1 else None,
        )
    return SnapshotsResponse(snapshots=out)
