"""Gap math: which bars the exchange calendar expects that the store does not have.

A bar is *missing* when the calendar expects it (`calendar.expected_bar_starts_ns`), no version
of it is stored, and no provider has confirmed its range empty (minutes without trades). Missing
bars that are adjacent in the sequence of expected, not-confirmed-empty bars form one *run*, so
a run continues across a night, a lunch break or a confirmed-empty range (they hold no such bar).

The one home of that rule, for every caller:
- sweeps: `find_gaps` over each job's (previous cursor, new cursor]; the runs are queued as
  backfill jobs;
- backfill: `find_gaps` over a job's range after its write; the runs the provider left empty are
  confirmed empty;
- SLO sampling: `stored_bar_starts`, `confirmed_empty_ranges` and `missing_runs` over a window;
  its largest gap is `longest_run` of those runs;
- reads: `bar_states` says which expected base bars of a built bar are stored, confirmed empty
  or missing (a built bar with a missing one is not complete), with the confirmed-empty ranges
  known at the read's `as_of`;
- the coverage report: `bar_states` per session, and `queued_backfills` for the missing
  bars a queued or running backfill job covers.

Times are int64 nanoseconds since the Unix epoch (UTC) inside, datetimes at the edges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import msgspec
import numpy as np

from market_data import calendar
from market_data.records import Interval

NsArray = np.ndarray
"""int64 nanoseconds since the Unix epoch (UTC)."""
EmptyRanges = Sequence[tuple[int, int]]
"""Confirmed-empty ranges [start_ns, end_ns); they may overlap and come in any order."""
Run = tuple[int, int, int]
"""A run of missing bars: (first bar start, last bar start, bars)."""

# The stored bar starts of each symbol as one bytea: the 8-byte binary form of each `ts`
# (timestamptz_send: big-endian microseconds since 2000-01-01 UTC), concatenated, which numpy
# reads as one array per symbol instead of a Python datetime per bar. Versions of one bar
# repeat its `ts`; nothing below minds duplicates.
_STORED_BAR_STARTS = """
SELECT symbol, string_agg(timestamptz_send(ts), ''::bytea) AS ts FROM bars
WHERE symbol = ANY($1::text[]) AND interval = $2 AND ts >= $3 AND ts < $4
GROUP BY symbol"""
_CONFIRMED_EMPTY = """
SELECT symbol, start_ts, end_ts FROM confirmed_empty_ranges
WHERE symbol = ANY($1::text[]) AND interval = $2 AND end_ts > $3 AND start_ts < $4
  AND ($5::timestamptz IS NULL OR confirmed_at <= $5)"""
_QUEUED_BACKFILLS = """
SELECT start_ts, end_ts, status, source FROM backfill_jobs
WHERE symbol = $1 AND interval = $2 AND status IN ('queued', 'running') AND end_ts > $3 AND start_ts < $4
ORDER BY start_ts, id"""
_PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01 00:00 UTC in microseconds since the Unix epoch."""
_TICK = timedelta(microseconds=1)
"""Postgres stores microseconds: ts > t is ts >= t + 1 µs."""


def _bar_starts_ns(packed: bytes) -> NsArray:
    """int64 ns since the Unix epoch from the concatenated timestamptz_send() values."""
    return (np.frombuffer(packed, dtype=">i8").astype(np.int64) + _PG_EPOCH_US) * 1000


async def stored_bar_starts(
    conn: asyncpg.Connection, symbols: Sequence[str], interval: Interval, start: datetime, end: datetime
) -> dict[str, NsArray]:
    """Start of every stored bar version with start <= ts < end, per symbol (any order, repeats).

    A symbol without a stored bar in the range is absent.
    """
    rows = await conn.fetch(_STORED_BAR_STARTS, list(symbols), interval.value, start, end)
    return {r["symbol"]: _bar_starts_ns(r["ts"]) for r in rows}


async def confirmed_empty_ranges(
    conn: asyncpg.Connection | asyncpg.Pool,
    symbols: Sequence[str],
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
) -> dict[str, list[tuple[int, int]]]:
    """The confirmed-empty ranges [start_ns, end_ns) that overlap [start, end), per symbol.

    With `as_of`: only the ranges confirmed by then (what a point-in-time read knew).
    """
    empty: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in await conn.fetch(_CONFIRMED_EMPTY, list(symbols), interval.value, start, end, as_of):
        empty[r["symbol"]].append((calendar.to_ns(r["start_ts"]), calendar.to_ns(r["end_ts"])))
    return dict(empty)


class QueuedBackfill(msgspec.Struct, frozen=True, kw_only=True):
    """A backfill job of one symbol and interval that is queued or running: [start, end)."""

    start: datetime
    end: datetime
    status: str
    """`queued` or `running`."""
    source: str
    """`gap` (a sweep found it), `manual` or `api`."""

    @property
    def range_ns(self) -> tuple[int, int]:
        return calendar.to_ns(self.start), calendar.to_ns(self.end)


async def queued_backfills(
    conn: asyncpg.Connection | asyncpg.Pool, symbol: str, interval: Interval, start: datetime, end: datetime
) -> list[QueuedBackfill]:
    """The queued or running backfill jobs that overlap [start, end), by start."""
    rows = await conn.fetch(_QUEUED_BACKFILLS, symbol, interval.value, start, end)
    return [
        QueuedBackfill(start=r["start_ts"], end=r["end_ts"], status=r["status"], source=r["source"])
        for r in rows
    ]


def in_ranges(values: NsArray, ranges: EmptyRanges) -> np.ndarray:
    """Boolean mask: which values fall inside any [start, end) of `ranges`."""
    if not len(ranges) or values.size == 0:
        return np.zeros(values.size, dtype=bool)
    r = np.asarray(sorted(ranges), dtype=np.int64).reshape(-1, 2)
    reach = np.maximum.accumulate(r[:, 1])  # furthest end of the ranges starting at or before
    idx = np.searchsorted(r[:, 0], values, side="right") - 1
    return (idx >= 0) & (values < reach[np.clip(idx, 0, None)])


def _is_stored(expected: NsArray, present: NsArray) -> np.ndarray:
    """Boolean mask: which expected bar starts (sorted) are among `present` (any order, repeats)."""
    if present.size == 0:
        return np.zeros(expected.size, dtype=bool)
    # a binary search of each expected start in the sorted stored ones (np.isin sorts both
    # arrays on every call)
    stored = np.sort(present)
    pos = np.minimum(np.searchsorted(stored, expected), stored.size - 1)
    return stored[pos] == expected


def missing_runs(expected: NsArray, present: NsArray, empty: EmptyRanges = ()) -> list[Run]:
    """Runs of `expected` bar starts (sorted) neither in `present` nor confirmed empty.

    Returns (first start, last start, bars) per run, in order. Bars inside `empty` are taken
    out before runs are formed: a run continues across them, as it does across a night.
    """
    if len(empty):
        expected = expected[~in_ranges(expected, empty)]
    if expected.size == 0:
        return []
    missing = ~_is_stored(expected, present)
    if not missing.any():
        return []
    idx = np.flatnonzero(missing)
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    return [(int(expected[s]), int(expected[e]), int(e - s + 1)) for s, e in zip(starts, ends, strict=True)]


def longest_run(runs: Iterable[Run]) -> Run | None:
    """The run with the most bars (the earliest of equals); None without a run."""
    return max(runs, key=lambda run: run[2], default=None)


class Coverage(msgspec.Struct, frozen=True, kw_only=True):
    """How a range's expected bars stand: each is stored, confirmed empty or missing."""

    expected: int
    stored: int
    """Expected bars with at least one stored version (confirmed empty or not)."""
    confirmed_empty: int
    """Expected bars not stored, inside a confirmed-empty range."""
    missing: int
    """Expected bars neither stored nor confirmed empty: the bars of `missing_runs`."""


class BarStates(NamedTuple):
    """Boolean masks over expected bar starts; a bar is in at most one, else missing."""

    stored: np.ndarray
    """At least one version is stored (whether or not a range also confirms it empty)."""
    confirmed_empty: np.ndarray
    """Not stored, inside a confirmed-empty range."""

    @property
    def missing(self) -> np.ndarray:
        return ~(self.stored | self.confirmed_empty)


def bar_states(expected: NsArray, present: NsArray, empty: EmptyRanges = ()) -> BarStates:
    """Which `expected` bar starts (sorted) are stored, confirmed empty or (neither) missing."""
    stored = _is_stored(expected, present)
    return BarStates(stored=stored, confirmed_empty=in_ranges(expected, empty) & ~stored)


def count_coverage(expected: NsArray, present: NsArray, empty: EmptyRanges = ()) -> Coverage:
    """Counts of a range's `expected` bar starts (sorted) by what the store holds of them."""
    states = bar_states(expected, present, empty)
    n_stored = int(np.count_nonzero(states.stored))
    n_empty = int(np.count_nonzero(states.confirmed_empty))
    return Coverage(
        expected=int(expected.size),
        stored=n_stored,
        confirmed_empty=n_empty,
        missing=int(expected.size) - n_stored - n_empty,
    )


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


async def find_gaps(conn: asyncpg.Connection, windows: Iterable[Window]) -> list[GapRange]:
    """The runs of missing bars in each window, as ranges; two queries per interval."""
    by_interval: dict[Interval, list[Window]] = defaultdict(list)
    for w in windows:
        if w.until > w.after:
            by_interval[w.interval].append(w)
    gaps: list[GapRange] = []
    none = np.empty(0, np.int64)
    for interval, ws in by_interval.items():
        symbols = sorted({w.symbol for w in ws})
        # (after, until] == [after + 1 µs, until + 1 µs)
        start = min(w.after for w in ws) + _TICK
        end = max(w.until for w in ws) + _TICK
        present = await stored_bar_starts(conn, symbols, interval, start, end)
        empty = await confirmed_empty_ranges(conn, symbols, interval, start, end)
        expected_cache: dict[tuple[str, datetime, datetime], NsArray] = {}
        step = interval.seconds * 1_000_000_000
        for w in ws:
            key = (w.exchange_mic, w.after, w.until)
            if key not in expected_cache:
                expected_cache[key] = calendar.expected_bar_starts_ns(
                    w.exchange_mic, interval, calendar.to_ns(w.after) + 1, calendar.to_ns(w.until) + 1
                )
            for first, last, bars in missing_runs(
                expected_cache[key], present.get(w.symbol, none), empty.get(w.symbol, ())
            ):
                # a daily bar's ts is its session date at 00:00 UTC, so + 1 day ends it too
                gaps.append(
                    GapRange(
                        symbol=w.symbol,
                        interval=interval,
                        start=calendar.to_datetime(first),
                        end=calendar.to_datetime(last + step),
                        bars=bars,
                    )
                )
    return gaps
