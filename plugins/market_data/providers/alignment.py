"""Vendor bars -> the calendar's bars: session-aligned, complete, in range, rolled up.

Vendors align intraday bars to the clock and include extended hours; daily bars are stamped
at local midnight, at the open or at UTC midnight. `calendar_bars` maps them onto the bars
`market_data.calendar` expects, so a vendor answer and the calendar agree on what a gap is.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from market_data import calendar
from market_data.records import Bar, Interval, ensure_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ns(ts: datetime) -> int:
    """Exact nanoseconds since the epoch (float timestamps lose precision at this scale)."""
    return (ensure_utc(ts) - _EPOCH) // _MICROSECOND * 1000


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def session_date(mic: str, ts: datetime) -> datetime:
    """A daily bar's `ts` (its session date at 00:00 UTC) from the time a vendor stamped it with.

    Vendors stamp a day at exchange-local midnight (Finnhub, Alpaca), at the open (Yahoo)
    or at UTC midnight; the exchange-local date is the session date for the first two, and
    for UTC midnight the UTC date is (in the Americas local time is still the day before).
    """
    utc = ensure_utc(ts)
    if utc.hour == utc.minute == utc.second == utc.microsecond == 0:
        day = utc.date()
    else:
        day = utc.astimezone(calendar.exchange_calendar(mic).tz).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def fetch_window(
    interval: Interval, start: datetime, end: datetime, *, finer: bool
) -> tuple[datetime, datetime]:
    """The time range to ask a vendor for so that every bar of [start, end) is in the answer.

    Daily bars: a vendor's stamp of a session may lie up to a day either side of the
    session date in UTC. Bars rolled up from a finer grid: the last one that starts
    before `end` ends up to one interval after it.
    """
    start, end = ensure_utc(start), ensure_utc(end)
    if interval is Interval.D1:
        return start - timedelta(days=1), end + timedelta(days=1)
    if finer:
        return start, end + interval.delta
    return start, end


def _roll_up(symbol: str, interval: Interval, start_ns: int, parts: list[Bar], provider: str) -> Bar:
    """One calendar bar from the vendor bars inside it (sorted by time)."""
    first = parts[0]
    if len(parts) == 1 and _ns(first.ts) == start_ns:
        return first
    volume = math.fsum(p.volume for p in parts)  # exact for whole and fractional volumes alike
    vwap: float | None = None
    if volume > 0 and all(p.vwap is not None for p in parts):
        vwap = round(sum((p.vwap or 0.0) * p.volume for p in parts) / volume, 6)
    counts = [p.trade_count for p in parts]
    return Bar(
        symbol=symbol,
        interval=interval,
        ts=calendar.to_datetime(start_ns),
        open=first.open,
        high=max(p.high for p in parts),
        low=min(p.low for p in parts),
        close=parts[-1].close,
        volume=volume,
        vwap=vwap,
        trade_count=None if any(c is None for c in counts) else sum(c or 0 for c in counts),
        provider=provider,
    )


def calendar_bars(
    vendor_bars: Iterable[Bar],
    mic: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    now: datetime,
    provider: str,
) -> list[Bar]:
    """The calendar's complete `interval` bars in [start, end) from vendor bars on that grid or a finer one.

    Each vendor bar goes to the calendar bar (session-aligned, see `market_data.calendar`)
    that contains its start. Bars outside every trading segment (extended hours) and bars
    of calendar bars that are out of range or not complete at `now` are dropped; several
    vendor bars in one calendar bar (a finer grid) are rolled up into it. Daily vendor bars
    must already be stamped with `session_date`.

    Raises:
        CalendarError: unknown exchange, or a range outside its calendar.
    """
    starts = calendar.expected_bar_starts_ns(mic, interval, calendar.to_ns(start), calendar.to_ns(end))
    if starts.size == 0:
        return []
    ends = calendar.bar_end_ns(mic, interval, starts)
    complete = ends <= calendar.to_ns(now)
    start_list: list[int] = starts[complete].tolist()
    end_list: list[int] = ends[complete].tolist()
    groups: dict[tuple[str, int], list[Bar]] = {}
    for bar in vendor_bars:
        ns = _ns(bar.ts)
        i = bisect_right(start_list, ns) - 1
        if i < 0 or ns >= end_list[i]:
            continue
        groups.setdefault((bar.symbol, i), []).append(bar)
    out: list[Bar] = []
    for (symbol, i), parts in sorted(groups.items()):
        parts.sort(key=lambda b: b.ts)
        out.append(_roll_up(symbol, interval, start_list[i], parts, provider))
    return out
