"""Exchange sessions and the bars we expect inside them (exchange-calendars).

One calendar per exchange MIC is built once per process and cached. Everything here is
vectorised over numpy datetime64[ns] (UTC) arrays so gap detection over thousands of
symbols stays cheap.

Conventions:
- an intraday bar starts at its trading segment's open plus a whole number of intervals
  and lies inside the segment (a session with a lunch break has two segments);
  the last bar of a segment may be short (early closes, 1h bars ending at 16:00).
- a daily bar's timestamp is the session date at 00:00 UTC.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from market_data.records import Interval, ensure_utc

# Far enough back for any backfill the policy allows; building is ~0.3 s per exchange.
CALENDAR_START = "2010-01-01"
_NS = np.int64(1_000_000_000)


class CalendarError(ValueError):
    """A calendar question that cannot be answered (unknown MIC, out of range)."""


@functools.cache
def exchange_calendar(mic: str) -> xcals.ExchangeCalendar:
    """The exchange-calendars calendar for an exchange MIC, built once per process."""
    try:
        return xcals.get_calendar(mic, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName as exc:
        raise CalendarError(f"exchange_mic: unknown exchange {mic!r}") from exc


def _utc_ns(series: pd.Series) -> np.ndarray:
    """A tz-aware UTC series as naive datetime64[ns] values (NaT kept)."""
    return series.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")


class _Sessions:
    """Session boundaries of one exchange as int64 nanoseconds since the epoch (UTC)."""

    def __init__(self, mic: str) -> None:
        cal = exchange_calendar(mic)
        self.mic = mic
        self.labels = cal.opens.index.values.astype("datetime64[ns]").astype(np.int64)
        self.opens = _utc_ns(cal.opens).astype(np.int64)
        self.closes = _utc_ns(cal.closes).astype(np.int64)
        bs = _utc_ns(cal.break_starts)
        be = _utc_ns(cal.break_ends)
        self.has_break = ~np.isnat(bs)
        self.break_starts = np.where(self.has_break, bs.astype(np.int64), self.closes)
        self.break_ends = np.where(self.has_break, be.astype(np.int64), self.closes)
        self.first_ns = int(self.opens[0])
        self.last_ns = int(self.closes[-1])

    def check(self, ns: int, name: str) -> None:
        if ns < self.first_ns or ns > self.last_ns:
            raise CalendarError(
                f"{name}: {to_datetime(ns).isoformat()} is outside the {self.mic} calendar "
                f"({to_datetime(self.first_ns).date()} .. {to_datetime(self.last_ns).date()})"
            )


@functools.cache
def _sessions(mic: str) -> _Sessions:
    return _Sessions(mic)


def to_ns(value: datetime) -> int:
    return int(pd.Timestamp(ensure_utc(value)).value)


def to_datetime(ns: int | np.integer) -> datetime:
    return pd.Timestamp(int(ns), tz=UTC).to_pydatetime()


def expected_bar_starts_ns(mic: str, interval: Interval, start_ns: int, end_ns: int) -> np.ndarray:
    """Start times (int64 ns, UTC) of every bar expected with start_ns <= ts < end_ns."""
    s = _sessions(mic)
    if end_ns <= start_ns:
        return np.empty(0, dtype=np.int64)
    s.check(start_ns, "start")
    s.check(min(end_ns, s.last_ns), "end")
    if interval is Interval.D1:
        first = int(np.searchsorted(s.labels, start_ns, side="left"))
        last = int(np.searchsorted(s.labels, end_ns, side="left"))
        return s.labels[first:last].copy()
    # sessions that overlap [start, end): close > start and open < end
    lo = int(np.searchsorted(s.closes, start_ns, side="right"))
    hi = int(np.searchsorted(s.opens, end_ns, side="left"))
    if hi <= lo:
        return np.empty(0, dtype=np.int64)
    sl = slice(lo, hi)
    # Trading segments: [open, break_start) and, for sessions with a break, [break_end, close).
    seg_start = np.concatenate([s.opens[sl], s.break_ends[sl][s.has_break[sl]]])
    seg_end = np.concatenate([s.break_starts[sl], s.closes[sl][s.has_break[sl]]])
    step = np.int64(interval.seconds) * _NS
    counts = np.maximum((seg_end - seg_start + step - 1) // step, 0)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    starts = np.repeat(seg_start, counts) + (np.arange(total, dtype=np.int64) - offsets) * step
    starts.sort()
    return starts[(starts >= start_ns) & (starts < end_ns)]


def expected_bar_times(mic: str, interval: Interval, start: datetime, end: datetime) -> list[datetime]:
    """Expected bar start times in [start, end) as UTC datetimes."""
    arr = expected_bar_starts_ns(mic, interval, to_ns(start), to_ns(end))
    return [to_datetime(v) for v in arr]


def bar_end_ns(mic: str, interval: Interval, bar_start_ns: np.ndarray) -> np.ndarray:
    """End of each bar: start + interval, clipped to its segment's end (early closes)."""
    s = _sessions(mic)
    if interval is Interval.D1:
        idx = np.searchsorted(s.labels, bar_start_ns, side="left")
        idx = np.clip(idx, 0, len(s.closes) - 1)
        return s.closes[idx]
    step = np.int64(interval.seconds) * _NS
    idx = np.searchsorted(s.opens, bar_start_ns, side="right") - 1
    idx = np.clip(idx, 0, len(s.opens) - 1)
    in_morning = bar_start_ns < s.break_starts[idx]
    seg_end = np.where(in_morning, s.break_starts[idx], s.closes[idx])
    return np.minimum(bar_start_ns + step, seg_end)


def is_open_at(mic: str, at: datetime) -> bool:
    """Whether the exchange is trading at `at` (inside a session, outside its break)."""
    s = _sessions(mic)
    ns = to_ns(at)
    i = int(np.searchsorted(s.opens, ns, side="right")) - 1
    if i < 0 or ns >= s.closes[i]:
        return False
    return not (s.break_starts[i] <= ns < s.break_ends[i])


def last_completed_session_open(mic: str, at: datetime) -> datetime:
    """Open of the latest session that closed at or before `at`."""
    s = _sessions(mic)
    ns = to_ns(at)
    s.check(ns, "at")
    i = int(np.searchsorted(s.closes, ns, side="right")) - 1
    if i < 0:
        raise CalendarError(f"at: no completed {mic} session before {at.isoformat()}")
    return to_datetime(s.opens[i])


def session_window(mic: str, at: datetime) -> tuple[datetime, datetime, bool]:
    """(open, close, is_open_now) of the current session, or of the last one when closed."""
    s = _sessions(mic)
    ns = to_ns(at)
    s.check(ns, "at")
    i = int(np.searchsorted(s.opens, ns, side="right")) - 1
    if i < 0:
        raise CalendarError(f"at: no {mic} session before {at.isoformat()}")
    return to_datetime(s.opens[i]), to_datetime(s.closes[i]), is_open_at(mic, at)


def sessions_open_between(mic: str, start: datetime, end: datetime) -> bool:
    """Whether any trading segment overlaps [start, end)."""
    return (
        expected_bar_starts_ns(mic, Interval.M1, to_ns(start), to_ns(end)).size > 0 if end > start else False
    )


def session_label_ns(mic: str, ts_ns: np.ndarray) -> np.ndarray:
    """Session label (date at 00:00 UTC, as ns) of the session each timestamp falls in."""
    s = _sessions(mic)
    idx = np.clip(np.searchsorted(s.opens, ts_ns, side="right") - 1, 0, len(s.opens) - 1)
    return s.labels[idx]
