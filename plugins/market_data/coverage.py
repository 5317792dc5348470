"""The coverage report: per session, how a symbol's expected bars of one interval stand.

Each bar the exchange calendar expects is stored, confirmed empty (a provider said no trades)
or missing; a missing bar may be queued for backfill (inside the range of a queued or running
job). The counts come from the gap module (`gaps.bar_states`, `gaps.in_ranges`), the same code
that sweeps queue gaps with and the SLO measures them by, over the store as it is now.
"""

from __future__ import annotations

from datetime import date, datetime

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
) -> list[SessionCoverage]:
    """One entry per session with an expected bar in [start, end), oldest first."""
    first, last = calendar.calendar_span_ns(mic)
    lo, hi = max(calendar.to_ns(start), first), min(calendar.to_ns(end), last)
    expected = calendar.expected_bar_starts_ns(mic, interval, lo, hi)
    if expected.size == 0:
        return []
    present = (await gaps.stored_bar_starts(conn, [symbol], interval, start, end)).get(
        symbol, np.empty(0, np.int64)
    )
    empty = (await gaps.confirmed_empty_ranges(conn, [symbol], interval, start, end)).get(symbol, [])
    jobs = await gaps.queued_backfill_ranges(conn, symbol, interval, start, end)
    states = gaps.bar_states(expected, present, empty)
    queued = states.missing & gaps.in_ranges(expected, jobs)
    sessions, inverse = np.unique(_sessions_of(mic, interval, expected), return_inverse=True)

    def per_session(mask: np.ndarray) -> list[int]:
        return np.bincount(inverse, weights=mask, minlength=sessions.size).astype(np.int64).tolist()

    labels, opens, closes = calendar.session_table_ns(mic, sessions)
    return [
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
