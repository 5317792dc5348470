"""The point-in-time write path shared by sweeps and backfills.

Bars are COPYed into a temporary staging table, then one set-based INSERT adds a new
version only where the incoming bar differs from the current one (newest `as_of`):
an identical re-delivery adds nothing, a changed bar adds a version with a later `as_of`.
Cursors advance and listeners are notified in the same transaction, so a crash leaves
either all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
import msgspec

from market_data.records import Bar, Quote

BAR_CHANNEL = "md_bars"
QUOTE_CHANNEL = "md_quotes"

_BAR_COLUMNS = (
    "symbol",
    "interval",
    "ts",
    "provider",
    "status",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
)
_QUOTE_COLUMNS = ("symbol", "ts", "provider", "last", "bid", "ask", "bid_size", "ask_size")

# ON COMMIT DELETE ROWS: the stage is empty at the start of every transaction.
_BAR_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS bars_stage (
    symbol text, interval text, ts timestamptz, provider text, status text,
    open float8, high float8, low float8, close float8, volume bigint, vwap float8,
    trade_count integer
) ON COMMIT DELETE ROWS"""

_QUOTE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS quotes_stage (
    symbol text, ts timestamptz, provider text, last float8, bid float8, ask float8,
    bid_size integer, ask_size integer
) ON COMMIT DELETE ROWS"""

# Writers of the same (symbol, interval) serialise here, in a fixed order (no deadlocks),
# so two concurrent writers can never both add the same "new" version.
_LOCK_KEYS = """
SELECT count(pg_advisory_xact_lock(hashtextextended(symbol || '|' || interval, 7)))
FROM (SELECT DISTINCT symbol, interval FROM bars_stage ORDER BY 1, 2) k"""

_INSERT_BARS = """
WITH incoming AS (
    SELECT DISTINCT ON (symbol, interval, ts) *
    FROM bars_stage ORDER BY symbol, interval, ts, provider
), ins AS (
    INSERT INTO bars (symbol, interval, ts, as_of, provider, status, open, high, low, close,
                      volume, vwap, trade_count, policy_version)
    SELECT s.symbol, s.interval, s.ts, $1, s.provider, s.status, s.open, s.high, s.low, s.close,
           s.volume, s.vwap, s.trade_count, $2
    FROM incoming s
    LEFT JOIN LATERAL (
        SELECT b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.status
        FROM bars b
        WHERE b.symbol = s.symbol AND b.interval = s.interval AND b.ts = s.ts
        ORDER BY b.as_of DESC
        LIMIT 1
    ) cur ON true
    WHERE cur.close IS NULL
       OR (cur.open, cur.high, cur.low, cur.close, cur.volume, cur.vwap, cur.trade_count, cur.status)
          IS DISTINCT FROM
          (s.open, s.high, s.low, s.close, s.volume, s.vwap, s.trade_count, s.status)
    RETURNING symbol, interval, ts, as_of, provider, open, high, low, close, volume, vwap
), latest AS (
    SELECT DISTINCT ON (symbol, interval) * FROM ins ORDER BY symbol, interval, ts DESC
), notified AS (
    SELECT pg_notify($3, json_build_object(
        'type', 'bar', 'symbol', symbol, 'interval', interval, 'ts', ts, 'as_of', as_of,
        'provider', provider, 'open', open, 'high', high, 'low', low, 'close', close,
        'volume', volume, 'vwap', vwap,
        'notified_at', extract(epoch FROM clock_timestamp()))::text)
    FROM latest
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM notified) AS notified"""

_ADVANCE_CURSORS = """
INSERT INTO ingestion_cursors AS c (symbol, interval, provider, last_ts, updated_at, policy_version)
SELECT symbol, interval, provider, max(ts), now(), $1 FROM bars_stage GROUP BY 1, 2, 3
ON CONFLICT (symbol, interval, provider) DO UPDATE
    SET last_ts = GREATEST(c.last_ts, EXCLUDED.last_ts), updated_at = now(),
        policy_version = EXCLUDED.policy_version"""

_INSERT_QUOTES = """
WITH ins AS (
    INSERT INTO quotes (symbol, ts, provider, as_of, last, bid, ask, bid_size, ask_size, policy_version)
    SELECT DISTINCT ON (symbol, ts, provider)
           symbol, ts, provider, clock_timestamp(), last, bid, ask, bid_size, ask_size, $1
    FROM quotes_stage ORDER BY symbol, ts, provider
    ON CONFLICT (symbol, ts, provider) DO NOTHING
    RETURNING symbol, ts, provider, last, bid, ask, bid_size, ask_size
), notified AS (
    SELECT pg_notify($2, json_build_object(
        'type', 'quote', 'symbol', symbol, 'ts', ts, 'provider', provider, 'last', last,
        'bid', bid, 'ask', ask, 'bid_size', bid_size, 'ask_size', ask_size,
        'notified_at', extract(epoch FROM clock_timestamp()))::text)
    FROM ins
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM notified) AS notified"""


class WriteResult(msgspec.Struct, frozen=True, kw_only=True):
    received: int
    """Rows handed to the writer."""
    inserted: int
    """New versions stored (new bars, or bars whose values changed)."""

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted


def _bar_rows(bars: Iterable[Bar]) -> list[tuple[object, ...]]:
    return [
        (
            b.symbol,
            b.interval.value,
            b.ts,
            b.provider,
            b.status,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap,
            b.trade_count,
        )
        for b in bars
    ]


async def write_bars(
    conn: asyncpg.Connection,
    bars: Sequence[Bar],
    *,
    policy_version: int | None,
    advance_cursors: bool,
) -> WriteResult:
    """Store bars point-in-time safe, in one transaction of its own.

    Args:
        advance_cursors: sweeps move `ingestion_cursors` forward to the newest bar of each
            (symbol, interval, provider); backfills of old ranges leave them (GREATEST keeps
            them from going back either way).
    """
    if not bars:
        return WriteResult(received=0, inserted=0)
    async with conn.transaction():
        await conn.execute(_BAR_STAGE)
        await conn.copy_records_to_table("bars_stage", records=_bar_rows(bars), columns=_BAR_COLUMNS)
        await conn.fetchval(_LOCK_KEYS)
        as_of = await conn.fetchval("SELECT clock_timestamp()")
        row = await conn.fetchrow(_INSERT_BARS, as_of, policy_version, BAR_CHANNEL)
        if advance_cursors:
            await conn.execute(_ADVANCE_CURSORS, policy_version)
    return WriteResult(received=len(bars), inserted=int(row["inserted"]))


async def write_quotes(
    conn: asyncpg.Connection, quotes: Sequence[Quote], *, policy_version: int | None
) -> WriteResult:
    """Store quotes; a re-delivered (symbol, ts, provider) is ignored."""
    if not quotes:
        return WriteResult(received=0, inserted=0)
    async with conn.transaction():
        await conn.execute(_QUOTE_STAGE)
        await conn.copy_records_to_table(
            "quotes_stage",
            records=[
                (q.symbol, q.ts, q.provider, q.last, q.bid, q.ask, q.bid_size, q.ask_size) for q in quotes
            ],
            columns=_QUOTE_COLUMNS,
        )
        row = await conn.fetchrow(_INSERT_QUOTES, policy_version, QUOTE_CHANNEL)
    return WriteResult(received=len(quotes), inserted=int(row["inserted"]))
