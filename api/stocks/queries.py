"""SQL of /stocks/* (bound parameters only; statements are built from constant fragments).

Bar reads follow the primary key (symbol, interval, ts, as_of): a range of `ts` for one
(symbol, interval) is an index range scan, and `DISTINCT ON (ts) ... ORDER BY ts, as_of DESC`
keeps the current (or as-of) version of each bar.

- Newest first reads the index backwards: no sort at all, and the LIMIT stops the scan.
- Oldest first needs `as_of DESC` inside ascending `ts`, which PostgreSQL 15 can only get by
  sorting everything the WHERE clause selects. Over a short range (a day of 1m bars) that is
  cheap; over a wide one, an index-only scan first finds the page's last `ts`, so only the
  rows of the page are read and sorted (`*_PAGED`). Both shapes also stay bounded under the
  generic plans asyncpg's prepared statements end up with.
- Multi-symbol reads run the same scans once per symbol (LATERAL).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from market_data.records import Interval

BAR_COLUMNS = "ts, open, high, low, close, volume, vwap, trade_count, provider, as_of"

EXCHANGES_OF = "SELECT symbol, exchange_mic, tier FROM symbol_universe WHERE symbol = ANY($1::text[])"

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

_RANGE = "symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4 AND as_of <= $5"

# Version known at $5 of each bar in [$3, $4): oldest first / newest first (at most $6 bars).
HISTORY_ASC = f"""
SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars WHERE {_RANGE}
ORDER BY ts, as_of DESC LIMIT $6"""

HISTORY_ASC_PAGED = f"""
WITH page AS (SELECT DISTINCT ts FROM bars WHERE {_RANGE} ORDER BY ts LIMIT $6)
SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars
WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts <= (SELECT max(ts) FROM page) AND as_of <= $5
ORDER BY ts, as_of DESC"""

HISTORY_DESC = f"""
SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars WHERE {_RANGE}
ORDER BY ts DESC, as_of DESC LIMIT $6"""

SHORT_RANGE_BARS = 5_000
"""A range the clock says holds at most this many bars is read by HISTORY_ASC (one scan)."""

# How many bars a range holds, counting at most $6 (the caller only asks "more than N?").
COUNT_RANGE = f"""
SELECT count(*) FROM (SELECT DISTINCT ts FROM bars WHERE {_RANGE} LIMIT $6) t"""

# Current version of each bar of a session.
SESSION_BARS = f"""
SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars
WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4
ORDER BY ts, as_of DESC LIMIT $5"""

_PER_SYMBOL_RANGE = "bars.symbol = s.symbol AND interval = $2 AND ts >= $3 AND ts < $4 AND as_of <= $5"

MULTI_BARS_ASC = f"""
SELECT s.symbol, b.* FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars
    WHERE {_PER_SYMBOL_RANGE} AND ts <= (
        SELECT max(p.ts) FROM (
            SELECT DISTINCT ts FROM bars WHERE {_PER_SYMBOL_RANGE} ORDER BY ts LIMIT $6
        ) p)
    ORDER BY ts, as_of DESC
) b"""

MULTI_BARS_DESC = f"""
SELECT s.symbol, b.* FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT DISTINCT ON (ts) {BAR_COLUMNS} FROM bars WHERE {_PER_SYMBOL_RANGE}
    ORDER BY ts DESC, as_of DESC LIMIT $6
) b"""

# Latest 1m bar and the latest two 1d bars (current versions) of each symbol.
SNAPSHOT_BARS = f"""
SELECT s.symbol, b.* FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    (SELECT '1m' AS interval, {BAR_COLUMNS} FROM bars
     WHERE bars.symbol = s.symbol AND interval = '1m' ORDER BY ts DESC, as_of DESC LIMIT 1)
    UNION ALL
    (SELECT DISTINCT ON (ts) '1d' AS interval, {BAR_COLUMNS} FROM bars
     WHERE bars.symbol = s.symbol AND interval = '1d' ORDER BY ts DESC, as_of DESC LIMIT 2)
) b"""

LATEST_QUOTES = """
SELECT s.symbol, q.ts, q.last, q.bid, q.ask, q.bid_size, q.ask_size, q.provider
FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT ts, last, bid, ask, bid_size, ask_size, provider FROM quotes
    WHERE quotes.symbol = s.symbol ORDER BY ts DESC LIMIT 1
) q"""

BAR_VERSIONS = """
SELECT as_of, provider, status, open, high, low, close, volume, vwap, trade_count, policy_version
FROM bars WHERE symbol = $1 AND interval = $2 AND ts = $3 ORDER BY as_of LIMIT $4"""


async def exchanges_of(conn: asyncpg.Pool, symbols: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(EXCHANGES_OF, symbols)


async def latest_quote(conn: asyncpg.Pool, symbol: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LATEST_QUOTE, symbol)


async def latest_bars(conn: asyncpg.Pool, symbol: str) -> list[asyncpg.Record]:
    return await conn.fetch(LATEST_BARS, symbol, [iv.value for iv in Interval])


async def bar_page(
    conn: asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
    limit: int,
    *,
    newest_first: bool,
) -> list[asyncpg.Record]:
    """Up to `limit` bars of [start, end) as known at `as_of`, from one end of the range."""
    if newest_first:
        sql = HISTORY_DESC
    elif (end - start) / interval.delta <= SHORT_RANGE_BARS:
        sql = HISTORY_ASC
    else:
        sql = HISTORY_ASC_PAGED
    return await conn.fetch(sql, symbol, interval.value, start, end, as_of, limit)


async def count_bars(
    conn: asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
    cap: int,
) -> int:
    """Bars in [start, end) as known at `as_of`, counted up to `cap`."""
    return int(await conn.fetchval(COUNT_RANGE, symbol, interval.value, start, end, as_of, cap))


async def session_bars(
    conn: asyncpg.Pool, symbol: str, interval: Interval, start: datetime, end: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(SESSION_BARS, symbol, interval.value, start, end, limit)


async def multi_bars(
    conn: asyncpg.Pool,
    symbols: list[str],
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
    limit: int,
    *,
    newest_first: bool,
) -> list[asyncpg.Record]:
    """Up to `limit` bars per symbol (rows of one symbol are adjacent)."""
    sql = MULTI_BARS_DESC if newest_first else MULTI_BARS_ASC
    return await conn.fetch(sql, symbols, interval.value, start, end, as_of, limit)


async def snapshot_bars(conn: asyncpg.Pool, symbols: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(SNAPSHOT_BARS, symbols)


async def latest_quotes(conn: asyncpg.Pool, symbols: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(LATEST_QUOTES, symbols)


async def bar_versions(
    conn: asyncpg.Pool, symbol: str, interval: Interval, ts: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(BAR_VERSIONS, symbol, interval.value, ts, limit)
