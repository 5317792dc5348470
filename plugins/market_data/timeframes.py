"""Timeframes: the bar sizes a read may ask for, and the buckets a built bar covers.

A timeframe is N minutes (`1m`-`59m`), N hours (`1h`-`23h`), `1d`, `1w` or `1mo`. The store
holds a few intervals (`records.Interval`); a timeframe that is not stored for a symbol is
built on read from the finest stored interval that divides it (`base_interval`), never from
a coarser one.

Buckets follow the exchange's sessions (`market_data.calendar`, so holidays, early closes,
lunch breaks and DST are the calendar's):

- intraday, `align=session` (the default): from each trading segment's start (the open; after
  a lunch break, the break's end) in steps of the timeframe. The last bucket of a segment
  ends with it (short at an early close), so no bucket spans a session boundary or a lunch
  break: New York 1h bars start 09:30, 10:30, ..., 15:30 (30 minutes); Tokyo's 09:00, 10:00,
  11:00 (30 minutes), then 12:30, 13:30, 14:30.
- intraday, `align=clock`: at multiples of the timeframe since the exchange's local midnight,
  clipped to the segment: New York 1h bars are 09:30-10:00, 10:00-11:00, ..., 15:00-16:00.
- `1d`: one session's regular hours; `ts` is the session date at 00:00 UTC, as stored daily bars.
- `1w`, `1mo`: the sessions whose dates (in the exchange's time zone) fall in that Monday-Sunday
  week or calendar month; `ts` is that Monday, or the first of the month, at 00:00 UTC.

A 24/7 market's sessions are UTC days from 00:00, so it needs no case of its own here.
Times are int64 nanoseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

import msgspec
import numpy as np

from market_data import calendar
from market_data.records import Interval

NsArray = np.ndarray
_NS_PER_MINUTE = 60 * 1_000_000_000
_DAY_NS = 1440 * _NS_PER_MINUTE
_MICROSECOND_NS = 1_000
NO_BUCKET = -1
"""The bucket of a base bar that lies outside every session (it is part of no built bar)."""


class Unit(enum.StrEnum):
    MINUTE = "m"
    HOUR = "h"
    DAY = "d"
    WEEK = "w"
    MONTH = "mo"


class Align(enum.StrEnum):
    """Where intraday buckets start: at the segment's start, or at multiples of the local clock."""

    SESSION = "session"
    CLOCK = "clock"


TIMEFRAME_PATTERN = r"^(?:[1-9]|[1-5][0-9])m$|^(?:[1-9]|1[0-9]|2[0-3])h$|^1(?:d|w|mo)$"
TIMEFRAMES_TEXT = "N minutes (1m-59m), N hours (1h-23h), 1d, 1w or 1mo"
_TIMEFRAME_RE = re.compile(TIMEFRAME_PATTERN)
_STORED = {iv.value: iv for iv in Interval}


class TimeframeError(ValueError):
    """A timeframe that is malformed, or that a symbol's stored intervals cannot build."""


class Timeframe(msgspec.Struct, frozen=True, array_like=True):
    count: int
    unit: Unit

    @property
    def value(self) -> str:
        return f"{self.count}{self.unit.value}"

    def __str__(self) -> str:
        return self.value

    @property
    def is_intraday(self) -> bool:
        return self.unit in (Unit.MINUTE, Unit.HOUR)

    @property
    def minutes(self) -> int:
        """Length of an intraday bucket in minutes (before clipping to its segment)."""
        if not self.is_intraday:
            raise ValueError(f"{self.value} is not an intraday timeframe")
        return self.count * (60 if self.unit is Unit.HOUR else 1)

    @property
    def stored(self) -> Interval | None:
        """The stored interval of the same name, if there is one."""
        return _STORED.get(self.value)


def parse_timeframe(text: str) -> Timeframe:
    """`15m` -> Timeframe(15, MINUTE).

    Raises:
        TimeframeError: not one of TIMEFRAMES_TEXT.
    """
    if not _TIMEFRAME_RE.match(text):
        raise TimeframeError(f"{text[:12]!r} is not a timeframe: use {TIMEFRAMES_TEXT}")
    unit = Unit.MONTH if text.endswith("mo") else Unit(text[-1])
    return Timeframe(int(text[: -len(unit.value)]), unit)


def _clock_nests(base: Interval, mic: str) -> bool:
    """Whether bars of `base` (aligned to segment starts) nest in clock-aligned buckets."""
    return calendar.clock_grain_minutes(mic) % (base.seconds // 60) == 0


def divides(base: Interval, timeframe: Timeframe, align: Align, mic: str) -> bool:
    """Whether every bucket of `timeframe` is a whole number of bars of `base`."""
    if not timeframe.is_intraday:
        return True  # a session (and so a week or month of them) is whole bars of any interval
    if not base.is_intraday:
        return False
    base_minutes = base.seconds // 60
    if timeframe.minutes % base_minutes:
        return False
    return align is Align.SESSION or _clock_nests(base, mic)


def reads_as_stored(timeframe: Timeframe, align: Align, stored: Iterable[Interval], mic: str) -> bool:
    """A stored timeframe is read as stored, unless clock buckets would cut its bars."""
    iv = timeframe.stored
    if iv is None or iv not in set(stored):
        return False
    return align is Align.SESSION or not iv.is_intraday or _clock_nests(iv, mic)


def base_interval(
    timeframe: Timeframe, align: Align, stored: Iterable[Interval], mic: str
) -> Interval | None:
    """The interval bars of `timeframe` are read from: itself when stored, else the finest
    stored interval that divides it; None when none does."""
    held = set(stored)
    if reads_as_stored(timeframe, align, held, mic):
        return timeframe.stored
    fitting = [iv for iv in held if divides(iv, timeframe, align, mic)]
    return min(fitting, key=lambda iv: iv.seconds) if fitting else None


def readable_timeframes(stored: Iterable[Interval], align: Align, mic: str) -> str:
    """What a symbol storing `stored` can be read at, for error messages."""
    held = sorted(set(stored), key=lambda iv: iv.seconds)
    intraday = [iv for iv in held if iv.is_intraday and (align is Align.SESSION or _clock_nests(iv, mic))]
    parts: list[str] = []
    if intraday:
        step = intraday[0].seconds // 60
        if step == 1:
            parts.append("1m-59m")
        elif step < 60:
            largest = 60 - step if 60 % step == 0 else 60 - 60 % step
            parts.append(f"multiples of {step}m ({step}m-{largest}m)")
        parts.append("1h-23h")
    if held:
        parts.append("1d, 1w, 1mo")
    return ", ".join(parts) if parts else "nothing (no interval is stored for it)"


# ------------------------------------------------------------------------------------------------
# buckets
# ------------------------------------------------------------------------------------------------
def _origins(mic: str, align: Align, seg: calendar.Segments) -> NsArray:
    """Where each segment's buckets count from: its start, or the local midnight before it."""
    if align is Align.SESSION:
        return seg.starts
    offset = calendar.utc_offsets_ns(mic, seg.sessions)
    local = seg.starts + offset
    return local - local % _DAY_NS - offset


def _period_starts(unit: Unit, labels: NsArray) -> NsArray:
    """The day, week (Monday) or month (the 1st) of each session label, at 00:00 UTC."""
    if unit is Unit.DAY:
        return labels
    if unit is Unit.WEEK:
        days = labels // _DAY_NS
        return (days - (days + 3) % 7) * _DAY_NS  # 1970-01-01 was a Thursday
    months = labels.astype("datetime64[ns]").astype("datetime64[M]")
    return months.astype("datetime64[ns]").astype(np.int64)


def bucket_starts_ns(mic: str, timeframe: Timeframe, align: Align, base: Interval, ts_ns: NsArray) -> NsArray:
    """The start of the bucket each `base` bar (starting at `ts_ns`) belongs to.

    NO_BUCKET for a bar outside every trading segment (or, daily, on a day without a session).
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    if timeframe.is_intraday:
        seg = calendar.segments_of_ns(mic, ts_ns)
        step = np.int64(timeframe.minutes * _NS_PER_MINUTE)
        origin = _origins(mic, align, seg)
        starts = np.maximum(origin + (ts_ns - origin) // step * step, seg.starts)
        return np.where(seg.sessions >= 0, starts, NO_BUCKET)
    if base is Interval.D1:
        sessions = calendar.sessions_of_labels(mic, ts_ns)
    else:
        sessions = calendar.segments_of_ns(mic, ts_ns).sessions
    labels, _, _ = calendar.session_table_ns(mic, np.maximum(sessions, 0))
    return np.where(sessions >= 0, _period_starts(timeframe.unit, labels), NO_BUCKET)


_PERIOD_REACH_NS = {Unit.DAY: 0, Unit.WEEK: 7 * _DAY_NS, Unit.MONTH: 31 * _DAY_NS}


def bucket_grid_ns(mic: str, timeframe: Timeframe, align: Align, start_ns: int, end_ns: int) -> NsArray:
    """Starts of every bucket with start_ns <= start < end_ns, ascending (clamped to the calendar)."""
    first, last = calendar.calendar_span_ns(mic)
    lo, hi = max(start_ns, first), min(end_ns, last)
    if hi <= lo:
        return np.empty(0, dtype=np.int64)
    if timeframe.is_intraday:
        seg = calendar.trading_segments_ns(mic, lo, hi)
        step = np.int64(timeframe.minutes * _NS_PER_MINUTE)
        origin = _origins(mic, align, seg)
        f = (seg.starts - origin) // step
        counts = -((origin - seg.ends) // step) - f  # ceil((end - origin) / step) - f
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        starts = np.maximum(
            np.repeat(origin, counts) + (np.repeat(f, counts) + k) * step, np.repeat(seg.starts, counts)
        )
    else:
        labels = _labels_between(mic, lo - _PERIOD_REACH_NS[timeframe.unit], hi)
        starts = np.unique(_period_starts(timeframe.unit, labels))
    return np.sort(starts[(starts >= lo) & (starts < hi)])


def _labels_between(mic: str, start_ns: int, end_ns: int) -> NsArray:
    """Session labels (dates at 00:00 UTC) in [start_ns, end_ns), within the calendar."""
    first, last = calendar.calendar_span_ns(mic)
    lo, hi = max(start_ns, first), min(end_ns, last)
    if hi <= lo:
        return np.empty(0, dtype=np.int64)
    return calendar.expected_bar_starts_ns(mic, Interval.D1, lo, hi)


def _period_end_ns(unit: Unit, start_ns: int) -> int:
    if unit is Unit.DAY:
        return start_ns + _DAY_NS
    if unit is Unit.WEEK:
        return start_ns + 7 * _DAY_NS
    month = np.datetime64(start_ns, "ns").astype("datetime64[M]") + 1
    return int(month.astype("datetime64[ns]").astype(np.int64))


def base_range_ns(
    mic: str, timeframe: Timeframe, align: Align, base: Interval, first_bucket: int, last_bucket: int
) -> tuple[int, int]:
    """[start, end) of the `base` bars that make the buckets first_bucket..last_bucket (starts).

    Intraday: from the first bucket's start to the last one's end. Daily and longer: from the
    open of the first session to the close of the last (a session may open the day before its
    date in UTC), or for daily base bars, from the first session's date to just after the last.
    """
    if timeframe.is_intraday:
        seg = calendar.segments_of_ns(mic, np.array([last_bucket], dtype=np.int64))
        step = np.int64(timeframe.minutes * _NS_PER_MINUTE)
        origin = _origins(mic, align, seg)
        boundary = origin + ((last_bucket - origin) // step + 1) * step
        return first_bucket, int(np.minimum(boundary, seg.ends)[0])
    labels = _labels_between(mic, first_bucket, _period_end_ns(timeframe.unit, last_bucket))
    if labels.size == 0:
        return first_bucket, first_bucket
    if base is Interval.D1:
        return int(labels[0]), int(labels[-1]) + _MICROSECOND_NS  # just after: the store keeps microseconds
    _, opens, closes = calendar.session_table_ns(mic, calendar.sessions_of_labels(mic, labels[[0, -1]]))
    return int(opens[0]), int(closes[1])
