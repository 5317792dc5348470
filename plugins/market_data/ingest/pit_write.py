"""The point-in-time write path shared by sweeps and backfills.

Bars are COPYed into a temporary staging table, then one set-based INSERT adds a new
version only where the incoming bar differs from the current one (newest `as_of`):
an identical re-delivery adds nothing, a changed bar adds a version with a later `as_of`.
Cursors advance and listeners are notified in the same transaction, so a crash leaves
either all of it or none of it.

The current versions are read per (symbol, interval) span of the delivery (one index range
scan each), not probed bar by bar; when no span holds a stored bar (the usual sweep: every
bar is new) the INSERT skips the comparison altogether. `./dev bench ingest` measures the
path against a raw COPY of the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from market_data.records import Bar, Quote

BAR_CHANNEL = "md_bars"
QUOTE_CHANNEL = "md_quotes"

# The stage is COPYed from `msgspec.structs.astuple(bar)`: its columns in Bar's field order.
_BAR_COLUMNS = tuple(f.name for f in msgspec.structs.fields(Bar))
assert set(_BAR_COLUMNS) == {
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
}, "Bar's fields changed: update the staging table and the INSERT"
_QUOTE_COLUMNS = ("symbol", "ts", "provider", "last", "bid", "ask", "bid_size", "ask_size")

# Settings of the write transaction: a large delivery sorts and hashes in memory, and never
# pays for JIT compilation (measured: 1.5-2 s for these plans, more than the statement itself).
_TX_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"

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

# First and last bar of each (symbol, interval) in the stage: where stored versions can collide.
_SPANS = """
SELECT symbol, interval, min(ts) AS first_ts, max(ts) AS last_ts FROM bars_stage GROUP BY symbol, interval"""

# Whether any span holds a stored bar (LATERAL + LIMIT 1: one index probe per span).
_ANY_STORED = f"""
SELECT count(*) > 0 FROM ({_SPANS}) r
CROSS JOIN LATERAL (
    SELECT 1 FROM bars b
    WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts >= r.first_ts AND b.ts <= r.last_ts
    LIMIT 1
) hit"""

# One row per (symbol, interval, ts); a bar delivered twice in one batch counts once.
_INCOMING = """
incoming AS (
    SELECT DISTINCT ON (symbol, interval, ts) *
    FROM bars_stage ORDER BY symbol, interval, ts, provider
)"""

_INSERT_INTO = """
    INSERT INTO bars (symbol, interval, ts, as_of, provider, status, open, high, low, close,
                      volume, vwap, trade_count, policy_version)
    SELECT s.symbol, s.interval, s.ts, $1, s.provider, s.status, s.open, s.high, s.low, s.close,
           s.volume, s.vwap, s.trade_count, $2"""

_RETURNING = "RETURNING symbol, interval, ts, as_of, provider, open, high, low, close, volume, vwap"

# The newest inserted bar of each (symbol, interval) is notified, in (symbol, interval) order.
_NOTIFY_AND_COUNT = """
, newest AS (
    SELECT symbol, interval, max(ts) AS ts FROM ins GROUP BY symbol, interval
), latest AS (
    SELECT i.* FROM newest n JOIN ins i USING (symbol, interval, ts) ORDER BY i.symbol, i.interval
), notified AS (
    SELECT pg_notify($3, json_build_object(
        'type', 'bar', 'symbol', symbol, 'interval', interval, 'ts', ts, 'as_of', as_of,
        'provider', provider, 'open', open, 'high', high, 'low', low, 'close', close,
        'volume', volume, 'vwap', vwap,
        'notified_at', extract(epoch FROM clock_timestamp()))::text)
    FROM latest
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM notified) AS notified"""

# No span holds a stored bar: every incoming bar is new (inserted in key order).
_INSERT_NEW_BARS = f"""
WITH {_INCOMING}, ins AS ({_INSERT_INTO}
    FROM incoming s
    {_RETURNING}
){_NOTIFY_AND_COUNT}"""

# Some spans hold stored bars: compare with the current version of each (newest `as_of`),
# read with one backward index range scan per span.
_INSERT_CHANGED_BARS = f"""
WITH {_INCOMING}, spans AS ({_SPANS}
), cur AS MATERIALIZED (
    SELECT c.* FROM spans r
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (b.ts) b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close,
               b.volume, b.vwap, b.trade_count, b.status
        FROM bars b
        WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts >= r.first_ts AND b.ts <= r.last_ts
        ORDER BY b.ts DESC, b.as_of DESC
    ) c
), ins AS ({_INSERT_INTO}
    FROM incoming s
    LEFT JOIN cur ON cur.symbol = s.symbol AND cur.interval = s.interval AND cur.ts = s.ts
    WHERE cur.close IS NULL
       OR (cur.open, cur.high, cur.low, cur.close, cur.volume, cur.vwap, cur.trade_count, cur.status)
          IS DISTINCT FROM
          (s.open, s.high, s.low, s.close, s.volume, s.vwap, s.trade_count, s.status)
    ORDER BY s.symbol, s.interval, s.ts
    {_RETURNING}
){_NOTIFY_AND_COUNT}"""

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
        await conn.execute(f"{_TX_SETTINGS}; {_BAR_STAGE}")
        await conn.copy_records_to_table(
            "bars_stage", records=list(map(msgspec.structs.astuple, bars)), columns=_BAR_COLUMNS
        )
        await conn.fetchval(_LOCK_KEYS)
        # under the locks: no other writer can store a bar of these spans until we commit
        any_stored = await conn.fetchval(_ANY_STORED)
        as_of = await conn.fetchval("SELECT clock_timestamp()")
        insert = _INSERT_CHANGED_BARS if any_stored else _INSERT_NEW_BARS
        row = await conn.fetchrow(insert, as_of, policy_version, BAR_CHANNEL)
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
