"""SQL of /stocks/* besides bar pages (bound parameters only; built from constant fragments).

Pages of bars, stored or built, are read by the bar read pipeline (`market_data.bar_reads`,
its SQL in `market_data.bar_fetch`); here: the universe look-up, the latest quote and bars of
/price and /snapshots, the versions of one bar. Single-bar reads follow the primary key
(symbol, interval, ts, as_of) backwards: no sort, and the LIMIT stops the scan.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from market_data.records import Interval

BAR_COLUMNS = "ts, open, high, low, close, volume, vwap, trade_count, provider, as_of"

# With the live security each symbol stores (none for a symbol added without the universe seeder).
EXCHANGES_OF = """
SELECT u.symbol, u.exchange_mic, u.tier, s.security_id FROM symbol_universe u
LEFT JOIN securities s ON s.storage_symbol = u.symbol AND s.delisted_on IS NULL
WHERE u.symbol = ANY($1::text[])"""

LATEST_QUOTE = """
SELECT ts, last, bid, ask, provider FROM quotes WHERE symbol = $1 ORDER BY ts DESC LIMIT 1"""

# The newest quote stored at an instant: the first stored by then, newest first.
LATEST_QUOTE_AS_OF = """
SELECT ts, last, bid, ask, provider FROM quotes WHERE symbol = $1 AND as_of <= $2
ORDER BY ts DESC LIMIT 1"""

# The newest bar per interval (one index probe each); the caller picks the most recent end.
LATEST_BARS = """
SELECT b.interval, b.ts, b.close, b.provider
FROM unnest($2::text[]) AS iv(interval)
CROSS JOIN LATERAL (
    SELECT interval, ts, close, provider FROM bars
    WHERE symbol = $1 AND interval = iv.interval
    ORDER BY ts DESC, as_of DESC LIMIT 1
) b"""

# The same at an instant: the version of each bar stored by then.
LATEST_BARS_AS_OF = """
SELECT b.interval, b.ts, b.close, b.provider
FROM unnest($2::text[]) AS iv(interval)
CROSS JOIN LATERAL (
    SELECT interval, ts, close, provider FROM bars
    WHERE symbol = $1 AND interval = iv.interval AND as_of <= $3
    ORDER BY ts DESC, as_of DESC LIMIT 1
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


async def latest_quote(
    conn: asyncpg.Pool, symbol: str, as_of: datetime | None = None
) -> asyncpg.Record | None:
    if as_of is not None:
        return await conn.fetchrow(LATEST_QUOTE_AS_OF, symbol, as_of)
    return await conn.fetchrow(LATEST_QUOTE, symbol)


async def latest_bars(conn: asyncpg.Pool, symbol: str, as_of: datetime | None = None) -> list[asyncpg.Record]:
    if as_of is not None:
        return await conn.fetch(LATEST_BARS_AS_OF, symbol, [iv.value for iv in Interval], as_of)
    return await conn.fetch(LATEST_BARS, symbol, [iv.value for iv in Interval])


async def snapshot_bars(conn: asyncpg.Pool, symbols: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(SNAPSHOT_BARS, symbols)


async def latest_quotes(conn: asyncpg.Pool, symbols: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(LATEST_QUOTES, symbols)


async def bar_versions(
    conn: asyncpg.Pool, symbol: str, interval: Interval, ts: datetime, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(BAR_VERSIONS, symbol, interval.value, ts, limit)
