"""Exchange sessions and the bars we expect inside them (exchange-calendars).

One calendar per exchange MIC is built once per process and cached. Everything here is
vectorised over numpy datetime64[ns] (UTC) arrays so gap detection over thousands of
symbols stays cheap.

Building an exchange's session table from exchange-calendars costs about 0.1 s of CPU (holiday
rules through pandas), which every short-lived Airflow task process would pay again: the table
is also kept as a small .npz file in the settings' `cache_dir`, named after everything its
content depends on (exchange, exchange-calendars version, first and last day), so the next
process loads it in a millisecond. A missing, unreadable or inconsistent file is rebuilt.

Markets that never close (crypto pairs) trade on exchange-calendars' `24/7` calendar under
the exchange code `CRYPTO_MIC` ("C247"): our MIC checks take four letters or digits, and a
code with digits is outside the letters ISO 10383 gives trading venues, so it cannot be
mistaken for (or later collide with) a registered exchange. Its sessions are UTC days
(00:00 to 00:00), so a 1d bar is a UTC day and every minute is an expected 1m bar.

Conventions:
- an intraday bar starts at its trading segment's open plus a whole number of intervals
  and lies inside the segment (a session with a lunch break has two segments);
  the last bar of a segment may be short (early closes, 1h bars ending at 16:00).
- a daily bar's timestamp is the session date at 00:00 UTC.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import exchange_calendars as xcals
import numpy as np
import pandas as pd
from exchange_calendars import exchange_calendar as _xcals_calendar

from market_data.records import Interval, ensure_utc

log = logging.getLogger(__name__)

# Far enough back for any backfill the policy allows, and no further: an exchange's calendar
# takes longer to build the further back it starts (README, Performance).
CALENDAR_START = "2010-01-01"
_NS = np.int64(1_000_000_000)

CRYPTO_MIC = "C247"
"""The exchange code of 24/7 crypto trading (see the module docstring)."""
_CALENDAR_NAMES = {CRYPTO_MIC: "24/7"}
"""Our exchange codes that are not exchange-calendars names, and the calendar each one uses."""


class CalendarError(ValueError):
    """A calendar question that cannot be answered (unknown MIC, out of range)."""


@functools.cache
def exchange_calendar(mic: str) -> xcals.ExchangeCalendar:
    """The exchange-calendars calendar for an exchange MIC, built once per process."""
    try:
        return xcals.get_calendar(_CALENDAR_NAMES.get(mic, mic), start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName as exc:
        raise CalendarError(f"exchange_mic: unknown exchange {mic!r}") from exc


def _utc_ns(series: pd.Series) -> np.ndarray:
    """A tz-aware UTC series as naive datetime64[ns] values (NaT kept)."""
    return series.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")


class _Sessions:
    """Session boundaries of one exchange as int64 nanoseconds since the epoch (UTC)."""

    _ARRAYS = ("labels", "opens", "closes", "break_starts", "break_ends", "has_break")

    def __init__(
        self,
        mic: str,
        labels: np.ndarray,
        opens: np.ndarray,
        closes: np.ndarray,
        break_starts: np.ndarray,
        break_ends: np.ndarray,
        has_break: np.ndarray,
    ) -> None:
        self.mic = mic
        self.labels = labels
        self.opens = opens
        self.closes = closes
        self.break_starts = break_starts
        self.break_ends = break_ends
        self.has_break = has_break
        self.first_ns = int(self.opens[0])
        self.last_ns = int(self.closes[-1])

    @classmethod
    def build(cls, mic: str) -> _Sessions:
        """From exchange-calendars (raises CalendarError for an unknown MIC)."""
        cal = exchange_calendar(mic)
        closes = _utc_ns(cal.closes).astype(np.int64)
        bs = _utc_ns(cal.break_starts)
        be = _utc_ns(cal.break_ends)
        has_break = ~np.isnat(bs)
        return cls(
            mic,
            labels=cal.opens.index.values.astype("datetime64[ns]").astype(np.int64),
            opens=_utc_ns(cal.opens).astype(np.int64),
            closes=closes,
            break_starts=np.where(has_break, bs.astype(np.int64), closes),
            break_ends=np.where(has_break, be.astype(np.int64), closes),
            has_break=has_break,
        )

    @classmethod
    def load(cls, mic: str, path: Path) -> _Sessions | None:
        """The table stored at `path`, or None when it is missing or not consistent."""
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in cls._ARRAYS}
        except (OSError, KeyError, ValueError):
            return None
        n = len(arrays["opens"])
        if n == 0 or any(len(a) != n for a in arrays.values()) or arrays["has_break"].dtype != np.bool_:
            return None
        if any(arrays[k].dtype != np.int64 for k in cls._ARRAYS if k != "has_break"):
            return None
        return cls(mic, **arrays)

    def save(self, path: Path) -> None:
        """Write the table atomically (best effort: a cache that cannot be written is skipped)."""
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, **{name: getattr(self, name) for name in self._ARRAYS})
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.debug("calendar cache %s not written: %s", path, exc)

    def check(self, ns: int, name: str) -> None:
        if ns < self.first_ns or ns > self.last_ns:
            raise CalendarError(
                f"{name}: {to_datetime(ns).isoformat()} is outside the {self.mic} calendar "
                f"({to_datetime(self.first_ns).date()} .. {to_datetime(self.last_ns).date()})"
            )


def _cache_file(mic: str) -> Path | None:
    """Where the session table of `mic` is shared between processes (None: no cache)."""
    from market_data.settings import get_settings

    base = get_settings().cache_dir
    if base is None:
        return None
    # exchange-calendars ends every calendar a year after the day it was imported
    end = pd.Timestamp(_xcals_calendar.GLOBAL_DEFAULT_END).strftime("%Y%m%d")
    start = CALENDAR_START.replace("-", "")
    return base / f"sessions-{mic}-xcals{xcals.__version__}-{start}-{end}.npz"


@functools.cache
def _sessions(mic: str) -> _Sessions:
    path = _cache_file(mic)
    if path is not None and (cached := _Sessions.load(mic, path)) is not None:
        return cached
    built = _Sessions.build(mic)
    if path is not None:
        built.save(path)
    return built


def to_ns(value: datetime) -> int:
    return int(pd.Timestamp(ensure_utc(value)).value)


def to_datetime(ns: int | np.integer) -> datetime:
    return pd.Timestamp(int(ns), tz=UTC).to_pydatetime()


def calendar_span_ns(mic: str) -> tuple[int, int]:
    """(first open, last close) the calendar of `mic` covers, int64 ns (UTC)."""
    s = _sessions(mic)
    return s.first_ns, s.last_ns


class Segments(NamedTuple):
    """Trading segments (a session, or each half of one with a lunch break), int64 ns (UTC)."""

    starts: np.ndarray
    ends: np.ndarray
    sessions: np.ndarray
    """Index of each segment's session in the calendar (-1: no segment, see `segments_of_ns`)."""


def trading_segments_ns(mic: str, start_ns: int, end_ns: int) -> Segments:
    """The trading segments that overlap [start_ns, end_ns), ordered by start.

    A session is one segment [open, close), or two, [open, break start) and [break end, close).
    """
    s = _sessions(mic)
    # sessions that overlap [start, end): close > start and open < end
    lo = int(np.searchsorted(s.closes, start_ns, side="right"))
    hi = int(np.searchsorted(s.opens, end_ns, side="left"))
    if hi <= lo:
        empty = np.empty(0, dtype=np.int64)
        return Segments(empty, empty, empty)
    idx = np.arange(lo, hi, dtype=np.int64)
    brk = s.has_break[lo:hi]
    starts = np.concatenate([s.opens[lo:hi], s.break_ends[lo:hi][brk]])
    ends = np.concatenate([s.break_starts[lo:hi], s.closes[lo:hi][brk]])
    sessions = np.concatenate([idx, idx[brk]])
    order = np.argsort(starts, kind="stable")
    return Segments(starts[order], ends[order], sessions[order])


def segments_of_ns(mic: str, ts_ns: np.ndarray) -> Segments:
    """The trading segment each instant lies in; start, end and session are -1 outside every one."""
    s = _sessions(mic)
    i = np.searchsorted(s.opens, ts_ns, side="right") - 1
    j = np.clip(i, 0, len(s.opens) - 1)
    inside = (i >= 0) & (ts_ns < s.closes[j]) & ~((s.break_starts[j] <= ts_ns) & (ts_ns < s.break_ends[j]))
    morning = ts_ns < s.break_starts[j]
    starts = np.where(morning, s.opens[j], s.break_ends[j])
    ends = np.where(morning, s.break_starts[j], s.closes[j])
    none = np.int64(-1)
    return Segments(
        np.where(inside, starts, none),
        np.where(inside, ends, none),
        np.where(inside, j, none).astype(np.int64),
    )


def sessions_of_labels(mic: str, labels_ns: np.ndarray) -> np.ndarray:
    """Calendar index of each session label (a daily bar's `ts`); -1 for a day without a session."""
    s = _sessions(mic)
    i = np.clip(np.searchsorted(s.labels, labels_ns, side="left"), 0, len(s.labels) - 1)
    return np.where(s.labels[i] == labels_ns, i, -1).astype(np.int64)


def session_table_ns(mic: str, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, open, close) of each session index, int64 ns (UTC); labels are dates at 00:00 UTC."""
    s = _sessions(mic)
    return s.labels[sessions], s.opens[sessions], s.closes[sessions]


def utc_offsets_ns(mic: str, sessions: np.ndarray) -> np.ndarray:
    """The exchange's UTC offset at the open of each session (local wall time = UTC + offset)."""
    return _offsets_at_open(mic)[sessions]


@functools.cache
def _offsets_at_open(mic: str) -> np.ndarray:
    # DST never switches inside a trading session, so the offset at the open holds all session long
    opens = _sessions(mic).opens
    local = pd.DatetimeIndex(opens.astype("datetime64[ns]"), tz=UTC).tz_convert(exchange_calendar(mic).tz)
    return local.tz_localize(None).asi8.astype(np.int64) - opens


@functools.cache
def clock_grain_minutes(mic: str) -> int:
    """The largest number of minutes that divides every segment start's local time of day.

    A bar of N minutes aligned to the clock (local midnight) nests bars of M minutes aligned to
    the segment starts when M divides N and this grain (New York: 30, 09:30 opens; London: 480).
    """
    s = _sessions(mic)
    off = _offsets_at_open(mic)
    starts = np.concatenate([s.opens + off, (s.break_ends + off)[s.has_break]])
    minute_of_day = (starts // (60 * _NS)) % 1440
    return int(np.gcd.reduce(np.append(minute_of_day, 1440)))


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
    seg = trading_segments_ns(mic, start_ns, end_ns)
    step = np.int64(interval.seconds) * _NS
    counts = np.maximum((seg.ends - seg.starts + step - 1) // step, 0)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    starts = np.repeat(seg.starts, counts) + (np.arange(total, dtype=np.int64) - offsets) * step
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


def _latest_session(mic: str, at: datetime, *, completed: bool) -> tuple[_Sessions, int]:
    """Index of the latest session that opened (`completed`: closed) at or before `at`."""
    s = _sessions(mic)
    ns = to_ns(at)
    s.check(ns, "at")
    i = int(np.searchsorted(s.closes if completed else s.opens, ns, side="right")) - 1
    if i < 0:
        which = "completed " if completed else ""
        raise CalendarError(f"at: no {which}{mic} session before {at.isoformat()}")
    return s, i


def last_completed_session_open(mic: str, at: datetime) -> datetime:
    """Open of the latest session that closed at or before `at`."""
    s, i = _latest_session(mic, at, completed=True)
    return to_datetime(s.opens[i])


def session_window(mic: str, at: datetime) -> tuple[datetime, datetime, bool]:
    """(open, close, is_open_now) of the current session, or of the last one when closed."""
    s, i = _latest_session(mic, at, completed=False)
    return to_datetime(s.opens[i]), to_datetime(s.closes[i]), is_open_at(mic, at)


def sessions_open_between(mic: str, start: datetime, end: datetime) -> bool:
    """Whether any trading segment overlaps [start, end)."""
    return (
        expected_bar_starts_ns(mic, Interval.M1, to_ns(start), to_ns(end)).size > 0 if end > start else False
    )
