"""Stored bars read from Postgres as columns (`aggregate.Bars`), at an `as_of`.

Every read comes back as one row: the bars packed into one bytea of fixed-width big-endian
records (the `*send` binary forms: timestamps as microseconds since 2000-01-01 UTC, float8,
a final flag) that numpy reads as one structured array, and the providers as one text[].
Decoding a year of 1m bars (about 98k) as asyncpg Records costs about 260 ms; packed, the
whole read is about 90 ms, most of it Postgres's scan (README, Performance). Null vwap and
trade_count travel as NaN; volume as float8 (whole shares and fractional crypto alike).

Reads follow the primary key (symbol, interval, ts, as_of):
- `range_versions`: every version known at `as_of` in [start, end), in index order (no sort);
  the newest of each bar is kept in numpy. Built bars read their base bars this way.
- `stored_page`: up to `limit` bars from one end of [start, end) (the shapes of `api.stocks`'s
  former page queries): newest first walks the index backwards, and a wide oldest-first range
  first finds the page's last `ts` with an index-only scan, so only the page's rows are sorted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import numpy as np

from market_data.aggregate import READ_AS_STORED, Bars, newest_versions
from market_data.records import Interval

_RECORD = (
    "timestamptz_send(ts) || timestamptz_send(as_of) || float8send(open) || float8send(high)"
    " || float8send(low) || float8send(close) || float8send(volume::float8)"
    " || float8send(coalesce(vwap, 'NaN')) || float8send(coalesce(trade_count::float8, 'NaN'))"
    " || boolsend(status = 'final')"
)
_DTYPE = np.dtype(
    [
        ("ts", ">i8"),
        ("as_of", ">i8"),
        ("open", ">f8"),
        ("high", ">f8"),
        ("low", ">f8"),
        ("close", ">f8"),
        ("volume", ">f8"),
        ("vwap", ">f8"),
        ("trade_count", ">f8"),
        ("final", "u1"),
    ]
)
_PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01 00:00 UTC in microseconds since the Unix epoch."""


# The aggregates read the subquery's rows in its order; `_decode` checks it anyway.
_PACKED = (
    "SELECT string_agg(" + _RECORD + ", ''::bytea) AS rows, array_agg(provider) AS providers FROM ({rows}) b"
)


_RANGE = "symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4 AND as_of <= $5"

# Every version known at $5 of the bars in [$3, $4), oldest first: the index's order.
RANGE_VERSIONS = _PACKED.format(rows=f"SELECT * FROM bars WHERE {_RANGE} ORDER BY ts, as_of")

# The version known at $5 of at most $6 bars of [$3, $4): oldest first / newest first.
PAGE_ASC = _PACKED.format(
    rows=f"SELECT DISTINCT ON (ts) * FROM bars WHERE {_RANGE} ORDER BY ts, as_of DESC LIMIT $6"
)
PAGE_ASC_WIDE = _PACKED.format(
    rows=f"""WITH page AS (SELECT DISTINCT ts FROM bars WHERE {_RANGE} ORDER BY ts LIMIT $6)
SELECT DISTINCT ON (ts) * FROM bars
WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts <= (SELECT max(ts) FROM page) AND as_of <= $5
ORDER BY ts, as_of DESC"""
)
PAGE_DESC = _PACKED.format(
    rows=f"SELECT DISTINCT ON (ts) * FROM bars WHERE {_RANGE} ORDER BY ts DESC, as_of DESC LIMIT $6"
)
SHORT_RANGE_BARS = 5_000
"""A range the clock says holds at most this many bars is read by PAGE_ASC (one scan and sort)."""

# First and last bar start in [$3, $4) with a version known at $5 (two index probes).
EXTENT = f"SELECT min(ts) AS first, max(ts) AS last FROM bars WHERE {_RANGE}"


def _decode(row: asyncpg.Record | None, *, descending: bool = False) -> Bars:
    if row is None or row["rows"] is None:
        return Bars.empty()
    a = np.frombuffer(row["rows"], dtype=_DTYPE)
    native = {name: a[name].astype(a.dtype[name].newbyteorder("=")) for name in _DTYPE.names or ()}
    n = a.size
    bars = Bars(
        ts=(native["ts"] + _PG_EPOCH_US) * 1000,
        open=native["open"],
        high=native["high"],
        low=native["low"],
        close=native["close"],
        volume=native["volume"],
        vwap=native["vwap"],
        trade_count=native["trade_count"],
        provider=np.array(row["providers"], dtype=object),
        as_of=(native["as_of"] + _PG_EPOCH_US) * 1000,
        complete=native["final"].astype(bool),
        base_bars=np.full(n, READ_AS_STORED, dtype=np.int64),
    )
    # Postgres aggregates rows in the subquery's order in practice, but SQL does not promise it
    ts, as_of = (bars.ts[::-1], bars.as_of[::-1]) if descending else (bars.ts, bars.as_of)
    if n > 1 and not (np.diff(ts) >= 0).all():
        order = np.lexsort((as_of, ts))
        bars = bars.take(order[::-1] if descending else order)
    return bars


async def range_versions(
    conn: asyncpg.Connection | asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> Bars:
    """The version known at `as_of` of every stored bar in [start, end), oldest first."""
    row = await conn.fetchrow(RANGE_VERSIONS, symbol, interval.value, start, end, as_of)
    return newest_versions(_decode(row))


async def stored_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
    limit: int,
    *,
    newest_first: bool,
) -> Bars:
    """Up to `limit` bars of [start, end) as known at `as_of`, from one end of the range, in walk order."""
    if newest_first:
        sql = PAGE_DESC
    elif (end - start) / timedelta(seconds=interval.seconds) <= SHORT_RANGE_BARS:
        sql = PAGE_ASC
    else:
        sql = PAGE_ASC_WIDE
    row = await conn.fetchrow(sql, symbol, interval.value, start, end, as_of, limit)
    return _decode(row, descending=newest_first)


async def stored_extent(
    conn: asyncpg.Connection | asyncpg.Pool,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> tuple[datetime, datetime] | None:
    """(first, last) start of a bar in [start, end) known at `as_of`; None when there is none."""
    row = await conn.fetchrow(EXTENT, symbol, interval.value, start, end, as_of)
    if row is None or row["first"] is None:
        return None
    return row["first"], row["last"]


# Every transaction open now in this database (but ours) started after the result: a version
# it writes gets an `as_of` after it (pit_write takes clock_timestamp() inside its transaction).
# Sessions of other roles are opaque to a role without pg_read_all_stats (backend_type and
# xact_start read NULL): for those, assume a transaction of up to SETTLE_MARGIN.
SETTLE_MARGIN_SECONDS = 60
SETTLED = f"""
SELECT least(
    clock_timestamp(),
    min(xact_start) FILTER (WHERE backend_type = 'client backend'),
    CASE WHEN bool_or(backend_type IS NULL)
         THEN clock_timestamp() - interval '{SETTLE_MARGIN_SECONDS} seconds' END
) - interval '1 microsecond'
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()"""


async def settled_as_of(conn: asyncpg.Connection | asyncpg.Pool) -> datetime:
    """The newest instant whose versions are all committed: a read at it never changes later.

    A write's `as_of` is taken inside its transaction, which commits a little later, so a read
    at `now` could miss a version (as_of < now) that commits a moment after it. Before the
    oldest transaction still open, nothing more can arrive. Where this role cannot see another
    role's sessions (no pg_read_all_stats), it assumes their transactions are at most
    SETTLE_MARGIN_SECONDS old.
    """
    settled: datetime = await conn.fetchval(SETTLED)
    return settled
