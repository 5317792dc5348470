"""The coverage report: per session, how a symbol's expected bars of one interval stand.

Each bar the exchange calendar expects is stored, confirmed empty (a provider said no trades)
or missing; a missing bar may be queued for backfill (inside the range of a queued or running
job). The counts come from the gap module (`gaps.bar_states`, `gaps.in_ranges`), the same code
that sweeps queue gaps with and the SLO measures them by, over the store as it is now. The
same states, as runs of adjacent expected bars within a session, are the report's `ranges`:
what the data-quality page (`/ui/{symbol}`) draws on its chart, with the stored bars that
have more than one version (`revised`).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import asyncpg
import msgspec
import numpy as np

from market_data import calendar, gaps
from market_data.records import Interval


class SessionCoverage(msgspec.Struct, frozen=True, kw_only=True):
    session: date
    """The session's date in the exchange's time zone (UTC days for 24/7 markets)."""
    open: datetime
    close: datetime
    expected: int
    """Bars the calendar expects in the session (and in the report's range)."""
    stored: int
    confirmed_empty: int
    missing: int
    queued_for_backfill: int
    """Missing bars inside a queued or running backfill job."""


class BarState(StrEnum):
    """How an expected bar that is not stored stands."""

    MISSING = "missing"
    QUEUED = "queued"
    """Missing, inside a queued or running backfill job."""
    CONFIRMED_EMPTY = "confirmed_empty"
    """A provider reported no trades in it."""


class StateRange(msgspec.Struct, frozen=True, kw_only=True):
    """Expected bars of one session, adjacent in time, none stored, all in the same state."""

    state: BarState
    start: datetime
    """Start of the first bar."""
    end: datetime
    """End of the last bar (its start plus the interval)."""
    bars: int


class RevisedBar(msgspec.Struct, frozen=True, kw_only=True):
    """A stored bar with more than one version (a provider corrected it)."""

    ts: datetime
    versions: int
    first_as_of: datetime
    """When its first version was stored."""
    as_of: datetime
    """When its current (newest) version was stored."""


MAX_REVISED = 5000
"""Most revised bars one report lists (oldest first); `revised_truncated` says when more exist."""

_REVISED_BARS = """
SELECT ts, count(*) AS versions, min(as_of) AS first_as_of, max(as_of) AS as_of FROM bars
WHERE symbol = $1 AND interval = $2 AND ts >= $3 AND ts < $4
GROUP BY ts HAVING count(*) > 1 ORDER BY ts LIMIT $5"""


class SymbolCoverage(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionCoverage]
    """Sessions with an expected bar in the range, oldest first."""
    ranges: list[StateRange]
    """The bars not stored, as runs per session and state, oldest first."""
    revised: list[RevisedBar]
    """Stored bars with more than one version, oldest first (at most MAX_REVISED)."""
    revised_truncated: bool
    backfills: list[gaps.QueuedBackfill]
    """The queued or running backfill jobs that overlap the range, by start."""


_STATE_OF_CODE = {1: BarState.CONFIRMED_EMPTY, 2: BarState.MISSING, 3: BarState.QUEUED}


def _state_ranges(
    expected: np.ndarray, codes: np.ndarray, session_index: np.ndarray, interval: Interval
) -> list[StateRange]:
    """Runs of equal non-zero `codes` (0 stored) over expected bars of one session, adjacent in time.

    A lunch break splits a run: each run is [start, end) without a hole, as the page draws it.
    """
    if expected.size == 0:
        return []
    step = interval.seconds * 1_000_000_000
    change = (np.diff(codes) != 0) | (np.diff(session_index) != 0)
    if interval is not Interval.D1:  # daily bars are one per session: the session split is enough
        change |= np.diff(expected) != step
    change = np.flatnonzero(change) + 1
    firsts = np.concatenate(([0], change))
    lasts = np.concatenate((change, [expected.size])) - 1
    keep = codes[firsts] != 0
    return [
        StateRange(
            state=_STATE_OF_CODE[code],
            start=calendar.to_datetime(expected[f]),
            end=calendar.to_datetime(expected[last] + step),
            bars=int(last - f + 1),
        )
        for f, last, code in zip(
            firsts[keep].tolist(), lasts[keep].tolist(), codes[firsts[keep]].tolist(), strict=True
        )
    ]


def _sessions_of(mic: str, interval: Interval, starts: np.ndarray) -> np.ndarray:
    if interval is Interval.D1:
        return calendar.sessions_of_labels(mic, starts)
    return calendar.segments_of_ns(mic, starts).sessions


async def session_coverage(
    conn: asyncpg.Connection | asyncpg.Pool,
    symbol: str,
    mic: str,
    interval: Interval,
    start: datetime,
    end: datetime,
) -> SymbolCoverage:
    """Per session with an expected bar in [start, end) its counts; the runs not stored, the
    revised bars and the queued or running backfill jobs of the range."""
    first, last = calendar.calendar_span_ns(mic)
    lo, hi = max(calendar.to_ns(start), first), min(calendar.to_ns(end), last)
    expected = calendar.expected_bar_starts_ns(mic, interval, lo, hi)
    revised_rows = await conn.fetch(_REVISED_BARS, symbol, interval.value, start, end, MAX_REVISED + 1)
    revised = [RevisedBar(**r) for r in revised_rows[:MAX_REVISED]]
    truncated = len(revised_rows) > MAX_REVISED
    backfills = await gaps.queued_backfills(conn, symbol, interval, start, end)
    if expected.size == 0:
        return SymbolCoverage(
            sessions=[], ranges=[], revised=revised, revised_truncated=truncated, backfills=backfills
        )
    present = (await gaps.stored_bar_starts(conn, [symbol], interval, start, end)).get(
        symbol, np.empty(0, np.int64)
    )
    empty = (await gaps.confirmed_empty_ranges(conn, [symbol], interval, start, end)).get(symbol, [])
    states = gaps.bar_states(expected, present, empty)
    queued = states.missing & gaps.in_ranges(expected, [job.range_ns for job in backfills])
    sessions, inverse = np.unique(_sessions_of(mic, interval, expected), return_inverse=True)

    def per_session(mask: np.ndarray) -> list[int]:
        return np.bincount(inverse, weights=mask, minlength=sessions.size).astype(np.int64).tolist()

    labels, opens, closes = calendar.session_table_ns(mic, sessions)
    codes = np.where(states.stored, 0, np.where(states.confirmed_empty, 1, np.where(queued, 3, 2)))
    report = [
        SessionCoverage(
            session=calendar.to_datetime(label).date(),
            open=calendar.to_datetime(o),
            close=calendar.to_datetime(c),
            expected=n,
            stored=s,
            confirmed_empty=e,
            missing=m,
            queued_for_backfill=q,
        )
        for label, o, c, n, s, e, m, q in zip(
            labels.tolist(),
            opens.tolist(),
            closes.tolist(),
            np.bincount(inverse, minlength=sessions.size).tolist(),
            per_session(states.stored),
            per_session(states.confirmed_empty),
            per_session(states.missing),
            per_session(queued),
            strict=True,
        )
    ]
    return SymbolCoverage(
        sessions=report,
        ranges=_state_ranges(expected, codes, inverse, interval),
        revised=revised,
        revised_truncated=truncated,
        backfills=backfills,
    )
