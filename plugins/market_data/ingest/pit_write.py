"""The point-in-time write path shared by sweeps and backfills.

Bars are COPYed into a temporary staging table, then one set-based INSERT adds a new
version only where the incoming bar differs from the current one (newest `as_of`):
an identical re-delivery adds nothing, a changed bar adds a version with a later `as_of`.
Cursors advance and listeners are notified in the same transaction, so a crash leaves
either all of it or none of it.

Writers of the same (symbol, interval) serialise on advisory locks, taken in one order by
every writer. Under the locks, one index probe per (symbol, interval) span of the delivery
tells whether any stored bar can collide. A delivery as providers send them (each symbol's
bars together, in rising time, from one provider) whose spans hold no stored bar (a sweep of
new minutes only, a first load) is COPYed straight into `bars`: no staging table, no
comparison. Anything else is staged and the set-based INSERT compares it with the current
versions, read per span (one index range scan each), not probed bar by bar: a sweep that
re-reads its tier's `revision_window` (corrections vendors send after the fact) takes this
path. `./dev bench ingest` measures the path against a raw COPY of the same rows.

Listeners get the newest new version of each (symbol, interval) and every correction of a
bar stored before, flagged (`version`, `revision`, `previous_as_of`; see notifications.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from market_data.notifications import (
    BAR_CHANNEL,
    QUOTE_CHANNEL,
    payload_fields,
    payload_json,
)
from market_data.records import Bar, Quote

# The stage is COPYed from `msgspec.structs.astuple(bar)`: its columns in Bar's field order.
_BAR_COLUMNS = tuple(f.name for f in msgspec.structs.fields(Bar))
_BAR_TYPES = {
    "symbol": "text",
    "interval": "text",
    "ts": "timestamptz",
    "provider": "text",
    "status": "text",
    "open": "float8",
    "high": "float8",
    "low": "float8",
    "close": "float8",
    "volume": "float8",
    "vwap": "float8",
    "trade_count": "integer",
}
"""SQL type of each column of a bar (the staging table's, and of the arrays of the newest bars)."""
assert set(_BAR_COLUMNS) == set(_BAR_TYPES), "Bar's fields changed: update the staging table and the INSERT"
_QUOTE_COLUMNS = ("symbol", "ts", "provider", "last", "bid", "ask", "bid_size", "ask_size")

# Settings of the write transaction: a large delivery sorts and hashes in memory, and never
# pays for JIT compilation (which costs more than the statement itself; README, Performance).
_TX_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"

# ON COMMIT DELETE ROWS: the stage is empty at the start of every transaction.
_BAR_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS bars_stage (
    symbol text, interval text, ts timestamptz, provider text, status text,
    open float8, high float8, low float8, close float8, volume float8, vwap float8,
    trade_count integer
) ON COMMIT DELETE ROWS"""

_QUOTE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS quotes_stage (
    symbol text, ts timestamptz, provider text, last float8, bid float8, ask float8,
    bid_size float8, ask_size float8
) ON COMMIT DELETE ROWS"""

# Writers of the same (symbol, interval) serialise here, all in the byte order of
# 'symbol|interval' (no deadlocks), so two concurrent writers can never both add the same
# "new" version. Two forms, one order: keys from the stage, or sorted by the writer.
_LOCK_STAGED_KEYS = """
SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7)))
FROM (SELECT DISTINCT (symbol || '|' || interval) COLLATE "C" AS k FROM bars_stage ORDER BY k) keys"""
_LOCK_KEYS = """
SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7)))
FROM (SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i) keys"""

# First and last bar of each (symbol, interval) in the stage: where stored versions can collide.
_SPANS = """
SELECT symbol, interval, min(ts) AS first_ts, max(ts) AS last_ts FROM bars_stage GROUP BY symbol, interval"""

# Whether any span holds a stored bar (LATERAL + LIMIT 1: one index probe per span).
_HIT = """
CROSS JOIN LATERAL (
    SELECT 1 FROM bars b
    WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts >= r.first_ts AND b.ts <= r.last_ts
    LIMIT 1
) hit"""
_ANY_STORED_STAGED = f"SELECT count(*) > 0 FROM ({_SPANS}) r {_HIT}"
_ANY_STORED = f"""
SELECT count(*) > 0
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
    AS r(symbol, interval, first_ts, last_ts) {_HIT}"""

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

_RETURNING = f"RETURNING {', '.join(payload_fields('bar'))}"

# The newest inserted bar of each (symbol, interval) is notified, in (symbol, interval) order.
_NOTIFY_AND_COUNT = """
, newest AS (
    SELECT symbol, interval, max(ts) AS ts FROM ins GROUP BY symbol, interval
), latest AS (
    SELECT i.* FROM newest n JOIN ins i USING (symbol, interval, ts) ORDER BY i.symbol, i.interval
), notified AS (
    SELECT pg_notify($3, {payload}) FROM latest
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM notified) AS notified""".format(
    payload=payload_json("bar", versions="first")
)

# Where stored bars can collide: the newest inserted bar of each (symbol, interval) and every
# revision (an inserted bar with a current version in `cur`) are notified, in (symbol,
# interval, ts) order, so a correction that comes with newer bars reaches listeners too. A
# revision's version is one more than the versions stored before this statement (its own
# insert is not visible to the statement's snapshot).
_NOTIFY_REVISIONS_AND_COUNT = """
, newest AS (
    SELECT symbol, interval, max(ts) AS ts FROM ins GROUP BY symbol, interval
), notify AS (
    SELECT i.*, cur.as_of AS previous_as_of FROM ins i
    LEFT JOIN cur ON cur.symbol = i.symbol AND cur.interval = i.interval AND cur.ts = i.ts
    WHERE cur.as_of IS NOT NULL OR (i.symbol, i.interval, i.ts) IN (SELECT * FROM newest)
    ORDER BY i.symbol, i.interval, i.ts
), notified AS (
    SELECT pg_notify($3, {payload}) FROM notify
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM notified) AS notified""".format(
    payload=payload_json(
        "bar",
        table="notify",
        version="""CASE WHEN notify.previous_as_of IS NULL THEN 1 ELSE 1 + (
            SELECT count(*) FROM bars v WHERE v.symbol = notify.symbol AND v.interval = notify.interval
            AND v.ts = notify.ts AND v.as_of < $1) END""",
        revision="notify.previous_as_of IS NOT NULL",
        previous_as_of="notify.previous_as_of",
    )
)

# No span holds a stored bar: every incoming bar is new (inserted in key order).
_INSERT_NEW_BARS = f"""
WITH {_INCOMING}, ins AS ({_INSERT_INTO}
    FROM incoming s
    {_RETURNING}
){_NOTIFY_AND_COUNT}"""

# A delivery in runs with no stored bar in its spans: COPYed straight into `bars` (Bar's
# fields, then these two), and the newest bar of each span notified as the INSERT does.
_DIRECT_COLUMNS = (*_BAR_COLUMNS, "as_of", "policy_version")
# The newest row of each run travels as arrays ($3...), one per payload field but `as_of` ($2).
_NEWEST_COLUMNS = payload_fields("bar", omit=("as_of",))
_NOTIFY_NEWEST = f"""
SELECT count(pg_notify($1, {payload_json("bar", as_of="$2::timestamptz", versions="first")}))
FROM (
    SELECT * FROM unnest({", ".join(f"${i}::{_BAR_TYPES[c]}[]" for i, c in enumerate(_NEWEST_COLUMNS, 3))})
        WITH ORDINALITY AS l({", ".join(_NEWEST_COLUMNS)}, i)
    ORDER BY i
) newest"""

# Some spans hold stored bars: compare with the current version of each (newest `as_of`),
# read with one backward index range scan per span.
_CHANGED_BARS = """
WITH {incoming}, spans AS ({spans}
), cur AS MATERIALIZED (
    SELECT c.* FROM spans r
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (b.ts) b.symbol, b.interval, b.ts, b.as_of, b.open, b.high, b.low,
               b.close, b.volume, b.vwap, b.trade_count, b.status
        FROM bars b
        WHERE b.symbol = r.symbol AND b.interval = r.interval AND b.ts >= r.first_ts AND b.ts <= r.last_ts
        ORDER BY b.ts DESC, b.as_of DESC
    ) c
), ins AS ({insert_into}
    FROM incoming s
    LEFT JOIN cur ON cur.symbol = s.symbol AND cur.interval = s.interval AND cur.ts = s.ts
    WHERE cur.ts IS NULL
       OR (cur.open, cur.high, cur.low, cur.close, cur.volume, cur.vwap, cur.trade_count, cur.status)
          IS DISTINCT FROM
          (s.open, s.high, s.low, s.close, s.volume, s.vwap, s.trade_count, s.status)
    ORDER BY s.symbol, s.interval, s.ts
    {returning}
){notify_and_count}"""
_INSERT_CHANGED_BARS = _CHANGED_BARS.format(
    incoming=_INCOMING.strip(),
    spans=_SPANS,
    insert_into=_INSERT_INTO,
    returning=_RETURNING,
    notify_and_count=_NOTIFY_REVISIONS_AND_COUNT,
)
_UPSERT_CURSORS = """
INSERT INTO ingestion_cursors AS c (symbol, interval, provider, last_ts, updated_at, policy_version)
{select}
ON CONFLICT (symbol, interval, provider) DO UPDATE
    SET last_ts = GREATEST(c.last_ts, EXCLUDED.last_ts), updated_at = now(),
        policy_version = EXCLUDED.policy_version"""
_ADVANCE_STAGED_CURSORS = _UPSERT_CURSORS.format(
    select="SELECT symbol, interval, provider, max(ts), now(), $1 FROM bars_stage GROUP BY 1, 2, 3"
)
_ADVANCE_CURSORS = _UPSERT_CURSORS.format(
    select="""SELECT symbol, interval, provider, last_ts, now(), $1
FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[])
    AS u(symbol, interval, provider, last_ts)"""
)

_INSERT_QUOTES = f"""
WITH ins AS (
    INSERT INTO quotes (symbol, ts, provider, as_of, last, bid, ask, bid_size, ask_size, policy_version)
    SELECT DISTINCT ON (symbol, ts, provider)
           symbol, ts, provider, clock_timestamp(), last, bid, ask, bid_size, ask_size, $1
    FROM quotes_stage ORDER BY symbol, ts, provider
    ON CONFLICT (symbol, ts, provider) DO NOTHING
    RETURNING {", ".join(payload_fields("quote"))}
), notified AS (
    SELECT pg_notify($2, {payload_json("quote")}) FROM ins
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


_SYM, _IV, _TS, _PROV = (_BAR_COLUMNS.index(c) for c in ("symbol", "interval", "ts", "provider"))
_NOTIFIED = tuple(_BAR_COLUMNS.index(c) for c in _NEWEST_COLUMNS)


class _Runs(msgspec.Struct):
    """The spans of a delivery that comes in runs, in lock order."""

    keys: list[str]
    """'symbol|interval', sorted: the lock order."""
    symbols: list[str]
    intervals: list[str]
    providers: list[str]
    firsts: list[datetime]
    lasts: list[datetime]
    newest: list[tuple[Any, ...]]
    """The last row of each run."""


def _runs(rows: list[tuple[Any, ...]]) -> _Runs | None:
    """The spans of `rows` when each (symbol, interval) comes as one run of strictly rising `ts`
    from one provider (no bar twice), as providers deliver; None for anything else, which the
    staging table sorts out. One pass of a few comparisons per row (it runs on every write)."""
    s_, i_, t_, p_ = _SYM, _IV, _TS, _PROV
    spans: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    sym = iv = prov = hi = None
    first: tuple[Any, ...] = ()
    last: tuple[Any, ...] = ()
    for r in rows:
        if r[s_] == sym and r[i_] == iv:
            if r[t_] <= hi or r[p_] != prov:
                return None  # out of order, repeated, or two providers in one span
            hi, last = r[t_], r
            continue
        if first:
            key = f"{sym}|{iv}"
            if key in spans:
                return None  # the span comes back later in the delivery
            spans[key] = (first, last)
        first = last = r
        sym, iv, prov, hi = r[s_], r[i_], r[p_], r[t_]
    key = f"{sym}|{iv}"
    if key in spans:
        return None
    spans[key] = (first, last)
    keys = sorted(spans)
    firsts, lasts = zip(*(spans[k] for k in keys), strict=True)
    return _Runs(
        keys=keys,
        symbols=[r[s_] for r in lasts],
        intervals=[r[i_] for r in lasts],
        providers=[r[p_] for r in lasts],
        firsts=[r[t_] for r in firsts],
        lasts=[r[t_] for r in lasts],
        newest=list(lasts),
    )


async def _stage(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await conn.execute(_BAR_STAGE)
    await conn.copy_records_to_table("bars_stage", records=rows, columns=_BAR_COLUMNS)


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
    rows: list[tuple[Any, ...]] = list(map(msgspec.structs.astuple, bars))
    runs = _runs(rows)
    async with conn.transaction():
        await conn.execute(_TX_SETTINGS)
        if runs is None:
            await _stage(conn, rows)
            await conn.fetchval(_LOCK_STAGED_KEYS)
            any_stored = await conn.fetchval(_ANY_STORED_STAGED)
        else:
            await conn.fetchval(_LOCK_KEYS, runs.keys)
            any_stored = await conn.fetchval(
                _ANY_STORED, runs.symbols, runs.intervals, runs.firsts, runs.lasts
            )
        # under the locks: no other writer can store a bar of these spans until we commit
        as_of = await conn.fetchval("SELECT clock_timestamp()")
        if runs is not None and not any_stored:  # every bar is new, none twice: straight in
            tail = (as_of, policy_version)
            await conn.copy_records_to_table(
                "bars", records=(r + tail for r in rows), columns=_DIRECT_COLUMNS
            )
            newest = [[r[i] for r in runs.newest] for i in _NOTIFIED]
            await conn.fetchval(_NOTIFY_NEWEST, BAR_CHANNEL, as_of, *newest)
            inserted = len(rows)
        else:
            if runs is not None:
                await _stage(conn, rows)
            insert = _INSERT_CHANGED_BARS if any_stored else _INSERT_NEW_BARS
            row = await conn.fetchrow(insert, as_of, policy_version, BAR_CHANNEL)
            inserted = int(row["inserted"])
        if advance_cursors and runs is not None:
            await conn.execute(
                _ADVANCE_CURSORS, policy_version, runs.symbols, runs.intervals, runs.providers, runs.lasts
            )
        elif advance_cursors:
            await conn.execute(_ADVANCE_STAGED_CURSORS, policy_version)
    return WriteResult(received=len(bars), inserted=inserted)


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
