"""Gap detection: bars the calendar expects that the store does not have.

After a sweep writes, each (symbol, interval) is checked between its previous cursor and its
new one: expected bar starts (the exchange calendar) minus the bars stored, minus ranges a
provider has confirmed empty (minutes without trades). Contiguous missing bars become one
range [first missing, last missing + interval). Everything is vectorised with numpy: one
query for the stored bars of a whole batch, one calendar array per distinct window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import asyncpg
import msgspec
import numpy as np

from market_data import calendar
from market_data.records import Interval

# The stored bar starts of each symbol as one bytea: the 8-byte binary form of each `ts`
# (timestamptz_send: big-endian microseconds since 2000-01-01 UTC), concatenated. Decoding
# millions of timestamps into Python datetimes cost seconds; this is one numpy view per symbol.
# Versions of one bar repeat its `ts`; the comparison does not mind duplicates.
_STORED_BAR_STARTS = """
SELECT symbol, string_agg(timestamptz_send(ts), ''::bytea) AS ts FROM bars
WHERE symbol = ANY($1::text[]) AND interval = $2 AND ts > $3 AND ts <= $4
GROUP BY symbol"""
_PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01 00:00 UTC in microseconds since the Unix epoch."""


def _bar_starts_ns(packed: bytes) -> np.ndarray:
    """int64 ns since the Unix epoch from the concatenated timestamptz_send() values."""
    return (np.frombuffer(packed, dtype=">i8").astype(np.int64) + _PG_EPOCH_US) * 1000


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """Check (after, until] of one symbol and interval."""

    symbol: str
    exchange_mic: str
    interval: Interval
    after: datetime
    """Exclusive: the previous cursor (or just before the first bar asked for)."""
    until: datetime
    """Inclusive: the new cursor."""


class GapRange(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    interval: Interval
    start: datetime
    end: datetime
    """Exclusive: the end of the last missing bar."""
    bars: int
    """Missing bars in the range."""


def missing_runs(expected: np.ndarray, present: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of `expected` (sorted int64) absent from `present`.

    Returns (first start, last start, count) per run; "contiguous" means adjacent in the
    expected sequence, so a run may span a night or a lunch break.
    """
    if expected.size == 0:
        return []
    if present.size == 0:
        missing = np.ones(expected.size, dtype=bool)
    else:
        # a binary search of each expected start in the sorted stored ones: np.isin costs
        # ten times as much on arrays of a session's size (it sorts both every call)
        stored = np.sort(present)
        pos = np.minimum(np.searchsorted(stored, expected), stored.size - 1)
        missing = stored[pos] != expected
    if not missing.any():
        return []
    idx = np.flatnonzero(missing)
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    return [(int(expected[s]), int(expected[e]), int(e - s + 1)) for s, e in zip(starts, ends, strict=True)]


def _subtract_empty(expected: np.ndarray, empty: list[tuple[int, int]]) -> np.ndarray:
    """Drop expected bar starts that fall in a confirmed-empty range [start, end)."""
    if not empty or expected.size == 0:
        return expected
    keep = np.ones(expected.size, dtype=bool)
    for s, e in empty:
        keep &= ~((expected >= s) & (expected < e))
    return expected[keep]


async def find_gaps(conn: asyncpg.Connection, windows: Iterable[Window]) -> list[GapRange]:
    """Missing bar ranges in each window, after confirmed-empty ranges are taken out."""
    by_interval: dict[Interval, list[Window]] = defaultdict(list)
    for w in windows:
        if w.until > w.after:
            by_interval[w.interval].append(w)
    gaps: list[GapRange] = []
    for interval, ws in by_interval.items():
        symbols = sorted({w.symbol for w in ws})
        lo = min(w.after for w in ws)
        hi = max(w.until for w in ws)
        rows = await conn.fetch(_STORED_BAR_STARTS, symbols, interval.value, lo, hi)
        present = {r["symbol"]: _bar_starts_ns(r["ts"]) for r in rows}
        empties: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for r in await conn.fetch(
            """SELECT symbol, start_ts, end_ts FROM confirmed_empty_ranges
               WHERE symbol = ANY($1::text[]) AND interval = $2 AND end_ts > $3 AND start_ts <= $4""",
            symbols,
            interval.value,
            lo,
            hi,
        ):
            empties[r["symbol"]].append((calendar.to_ns(r["start_ts"]), calendar.to_ns(r["end_ts"])))
        expected_cache: dict[tuple[str, datetime, datetime], np.ndarray] = {}
        step = np.int64(interval.seconds) * 1_000_000_000
        for w in ws:
            key = (w.exchange_mic, w.after, w.until)
            if key not in expected_cache:
                # (after, until] == [after + 1ns, until + 1ns)
                expected_cache[key] = calendar.expected_bar_starts_ns(
                    w.exchange_mic, interval, calendar.to_ns(w.after) + 1, calendar.to_ns(w.until) + 1
                )
            expected = _subtract_empty(expected_cache[key], empties.get(w.symbol, []))
            for first, last, count in missing_runs(expected, present.get(w.symbol, np.empty(0, np.int64))):
                # a daily bar's ts is its session date at 00:00 UTC, so + 1 day ends it too
                gaps.append(
                    GapRange(
                        symbol=w.symbol,
                        interval=interval,
                        start=calendar.to_datetime(first),
                        end=calendar.to_datetime(last + int(step)),
                        bars=count,
                    )
                )
    return gaps
