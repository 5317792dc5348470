"""SQL of /stocks/* (bound parameters only)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from market_data.records import Interval

SYMBOL_INFO = "SELECT exchange_mic, tier FROM symbol_universe WHERE symbol = $1"

LATEST_QUOTE = """
SELECT ts, last, bid, ask, provider FROM quotes WHERE symbol = $1 ORDER BY ts DESC LIMIT 1"""

# The newest bar per interval (one index probe each); the caller picks the most recent end.
LATEST_BARS = """
SELECT b.interval, b.ts, b.close, b.provider
FROM unnest($2::text[]) AS iv(interval)
CROSS JOIN LATERAL (
    SELECT interval, ts, close, provider FROM bars
    WHERE symbol = $1 AND interval = iv.interval
    ORDER BY ts DESC, as_of DESC LIMIT 1
) b"""

# Current (or as-of) version of each bar in [start, end), oldest first.
HISTORY = """
SELECT DISTINCT ON (ts) ts, open, high, low, close, volume, vwap, trade_count, provider, as_of
FROM bars
WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4 AND as_of <= $5
ORDER BY ts, as_of DESC
LIMIT $6"""

# The latest `limit` bars before end (when no start is given).
HISTORY_TAIL = """
SELECT * FROM (
    SELECT DISTINCT ON (ts) ts, open, high, low, close, volume, vwap, trade_count, provider, as_of
    FROM bars
    WHERE symbol = $1 AND interval = $2 AND ts < $3 AND as_of <= $4
    ORDER BY ts DESC, as_of DESC
    LIMIT $5
) t ORDER BY ts"""


async def symbol_info(conn: asyncpg.Pool, symbol: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SYMBOL_INFO, symbol)


async def latest_quote(conn: asyncpg.Pool, symbol: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LATEST_QUOTE, symbol)


async def latest_bars(conn: asyncpg.Pool, symbol: str) -> list[asyncpg.Record]:
    return await conn.fetch(LATEST_BARS, symbol, [iv.value for iv in Interval])


async def history(
    conn: asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime | None,
    end: datetime,
    as_of: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    if start is None:
        return await conn.fetch(HISTORY_TAIL, symbol, interval.value, end, as_of, limit)
    return await conn.fetch(HISTORY, symbol, interval.value, start, end, as_of, limit)
