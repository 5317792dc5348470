"""Timeframes: parsing, which stored interval builds which, and the buckets in real sessions.

Golden buckets around the New York early close of 2025-11-28 (13:00), the DST switches that
the Mondays 2025-03-10 and 2025-11-03 open under, Tokyo's lunch break (11:30-12:30) and a
London session, in UTC as the calendar gives them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from market_data import calendar
from market_data.records import Interval
from market_data.timeframes import (
    NO_BUCKET,
    Align,
    Timeframe,
    TimeframeError,
    Unit,
    base_interval,
    base_range_ns,
    bucket_grid_ns,
    bucket_starts_ns,
    parse_timeframe,
    readable_timeframes,
)

M1, M5, M15, H1, D1 = Interval.M1, Interval.M5, Interval.M15, Interval.H1, Interval.D1
SESSION, CLOCK = Align.SESSION, Align.CLOCK


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def hm(values: np.ndarray) -> list[str]:
    return [calendar.to_datetime(v).strftime("%H:%M") for v in values]


def days(values: np.ndarray) -> list[str]:
    return [calendar.to_datetime(v).strftime("%Y-%m-%d") for v in values]


def grid(mic: str, tf: str, align: Align, start: datetime, end: datetime) -> np.ndarray:
    return bucket_grid_ns(mic, parse_timeframe(tf), align, calendar.to_ns(start), calendar.to_ns(end))


@pytest.mark.parametrize(
    "text,count,unit",
    [
        ("1m", 1, Unit.MINUTE),
        ("59m", 59, Unit.MINUTE),
        ("2h", 2, Unit.HOUR),
        ("23h", 23, Unit.HOUR),
        ("1d", 1, Unit.DAY),
        ("1w", 1, Unit.WEEK),
        ("1mo", 1, Unit.MONTH),
    ],
)
def test_timeframes_parse(text: str, count: int, unit: Unit) -> None:
    tf = parse_timeframe(text)
    assert tf == Timeframe(count, unit) and tf.value == text


@pytest.mark.parametrize("text", ["0m", "60m", "24h", "2d", "1y", "1M", "m", "1 m", "01m", "1mon", "", "1H"])
def test_anything_else_is_refused_saying_what_is_allowed(text: str) -> None:
    with pytest.raises(TimeframeError, match=r"1m-59m.*1h-23h.*1d, 1w or 1mo"):
        parse_timeframe(text)


def test_a_stored_interval_is_read_as_stored_and_others_from_the_finest_that_divides() -> None:
    tf = parse_timeframe
    assert base_interval(tf("5m"), SESSION, {M1, M5}, "XNYS") is M5
    assert base_interval(tf("10m"), SESSION, {M1, M5}, "XNYS") is M1  # the finest, not the largest
    assert base_interval(tf("30m"), SESSION, {M5, M15}, "XNYS") is M5
    assert base_interval(tf("1d"), SESSION, {M1}, "XNYS") is M1
    assert base_interval(tf("1w"), SESSION, {D1}, "XNYS") is D1
    assert base_interval(tf("2h"), SESSION, {H1}, "XNYS") is H1


def test_never_from_a_coarser_interval_nor_one_that_does_not_divide() -> None:
    tf = parse_timeframe
    assert base_interval(tf("1m"), SESSION, {M5}, "XNYS") is None
    assert base_interval(tf("7m"), SESSION, {M5}, "XNYS") is None
    assert base_interval(tf("1h"), SESSION, {D1}, "XNYS") is None
    assert base_interval(tf("20m"), SESSION, {M15}, "XNYS") is None


def test_clock_alignment_needs_bars_that_nest_in_clock_buckets() -> None:
    # New York opens at 09:30: 1h bars from the open (09:30, 10:30) do not nest in clock hours
    assert base_interval(parse_timeframe("1h"), CLOCK, {M1, H1}, "XNYS") is M1
    assert base_interval(parse_timeframe("2h"), CLOCK, {H1}, "XNYS") is None
    assert base_interval(parse_timeframe("1h"), CLOCK, {M15}, "XNYS") is M15
    # London opens at 08:00: its 1h bars are clock hours
    assert base_interval(parse_timeframe("2h"), CLOCK, {H1}, "XLON") is H1


def test_what_a_symbol_can_be_read_at_is_spelled_out() -> None:
    assert readable_timeframes({M1}, SESSION, "XNYS") == "1m-59m, 1h-23h, 1d, 1w, 1mo"
    assert readable_timeframes({M5}, SESSION, "XNYS") == "multiples of 5m (5m-55m), 1h-23h, 1d, 1w, 1mo"
    assert readable_timeframes({M15}, SESSION, "XNYS") == "multiples of 15m (15m-45m), 1h-23h, 1d, 1w, 1mo"
    assert readable_timeframes({D1}, SESSION, "XNYS") == "1d, 1w, 1mo"


GOLDEN = [
    # (case, mic, timeframe, align, day (UTC), bucket starts (UTC HH:MM))
    (
        "New York early close: the last hour is 30 minutes",
        "XNYS",
        "1h",
        SESSION,
        (2025, 11, 28),
        ["14:30", "15:30", "16:30", "17:30"],
    ),
    (
        "New York early close, clock hours",
        "XNYS",
        "1h",
        CLOCK,
        (2025, 11, 28),
        ["14:30", "15:00", "16:00", "17:00"],
    ),
    ("New York early close, 2h", "XNYS", "2h", SESSION, (2025, 11, 28), ["14:30", "16:30"]),
    (
        "Monday after the spring switch (EDT): 09:30 is 13:30 UTC",
        "XNYS",
        "1h",
        SESSION,
        (2025, 3, 10),
        ["13:30", "14:30", "15:30", "16:30", "17:30", "18:30", "19:30"],
    ),
    (
        "Friday before the spring switch (EST)",
        "XNYS",
        "1h",
        SESSION,
        (2025, 3, 7),
        ["14:30", "15:30", "16:30", "17:30", "18:30", "19:30", "20:30"],
    ),
    (
        "Monday after the autumn switch (EST)",
        "XNYS",
        "3h",
        SESSION,
        (2025, 11, 3),
        ["14:30", "17:30", "20:30"],
    ),
    (
        "Tokyo: no bar spans the lunch break; the afternoon starts at 12:30",
        "XTKS",
        "1h",
        SESSION,
        (2025, 11, 27),
        ["00:00", "01:00", "02:00", "03:30", "04:30", "05:30"],
    ),
    ("Tokyo, 2h on the clock", "XTKS", "2h", CLOCK, (2025, 11, 27), ["00:00", "01:00", "03:30", "05:00"]),
    (
        "London in winter: 08:00-16:30 GMT",
        "XLON",
        "2h",
        SESSION,
        (2025, 11, 27),
        ["08:00", "10:00", "12:00", "14:00", "16:00"],
    ),
    ("London in summer: 07:00 UTC", "XLON", "4h", SESSION, (2025, 7, 15), ["07:00", "11:00", "15:00"]),
    (
        "24/7: UTC days from midnight",
        "24/7",
        "5h",
        SESSION,
        (2025, 11, 29),
        ["00:00", "05:00", "10:00", "15:00", "20:00"],
    ),
]


@pytest.mark.parametrize("case,mic,tf,align,day,starts", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_intraday_buckets_golden(case, mic, tf, align, day, starts) -> None:
    assert hm(grid(mic, tf, align, utc(*day), utc(*day, 23, 59))) == starts


@pytest.mark.parametrize("case,mic,tf,align,day,starts", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_every_expected_minute_falls_in_a_bucket_of_the_grid(case, mic, tf, align, day, starts) -> None:
    lo, hi = calendar.to_ns(utc(*day)), calendar.to_ns(utc(*day, 23, 59))
    minutes = calendar.expected_bar_starts_ns(mic, M1, lo, hi)
    buckets = bucket_starts_ns(mic, parse_timeframe(tf), align, M1, minutes)
    assert hm(np.unique(buckets)) == starts
    # a bucket never reaches into the next segment: its minutes are all before the next bucket
    for b, end in zip(np.unique(buckets), np.append(np.unique(buckets)[1:], hi), strict=True):
        inside = minutes[buckets == b]
        assert inside.min() == b and inside.max() < end


def test_a_bar_outside_every_session_belongs_to_no_bucket() -> None:
    saturday = calendar.to_ns(utc(2025, 11, 29, 15))
    lunch = calendar.to_ns(utc(2025, 11, 27, 2, 45))  # Tokyo 11:45
    assert bucket_starts_ns("XNYS", parse_timeframe("1h"), SESSION, M1, np.array([saturday]))[0] == NO_BUCKET
    assert bucket_starts_ns("XTKS", parse_timeframe("1d"), SESSION, M1, np.array([lunch]))[0] == NO_BUCKET


def test_daily_weekly_and_monthly_buckets_are_sessions_of_that_day_week_and_month() -> None:
    lo, hi = utc(2025, 11, 24), utc(2025, 12, 6)
    assert days(grid("XNYS", "1d", SESSION, lo, hi)) == [
        "2025-11-24",
        "2025-11-25",
        "2025-11-26",  # Thanksgiving 27th: no session
        "2025-11-28",
        "2025-12-01",
        "2025-12-02",
        "2025-12-03",
        "2025-12-04",
        "2025-12-05",
    ]
    assert days(grid("XNYS", "1w", SESSION, utc(2025, 11, 1), hi)) == [
        "2025-11-03",
        "2025-11-10",
        "2025-11-17",
        "2025-11-24",
        "2025-12-01",
    ]
    assert days(grid("XNYS", "1mo", SESSION, utc(2025, 1, 1), utc(2025, 4, 1))) == [
        "2025-01-01",
        "2025-02-01",
        "2025-03-01",
    ]
    labels = calendar.expected_bar_starts_ns("XNYS", D1, calendar.to_ns(lo), calendar.to_ns(hi))
    weeks = bucket_starts_ns("XNYS", parse_timeframe("1w"), SESSION, D1, labels)
    assert days(np.unique(weeks)) == ["2025-11-24", "2025-12-01"]
    assert np.count_nonzero(weeks == weeks[0]) == 4  # Thanksgiving week: four sessions


def test_a_week_of_a_24_7_market_is_seven_utc_days() -> None:
    minutes = calendar.expected_bar_starts_ns(
        "24/7", M1, calendar.to_ns(utc(2025, 11, 24)), calendar.to_ns(utc(2025, 12, 1))
    )
    weeks = bucket_starts_ns("24/7", parse_timeframe("1w"), SESSION, M1, minutes)
    assert days(np.unique(weeks)) == ["2025-11-24"] and minutes.size == 7 * 1440


def test_base_range_of_buckets_covers_their_sessions() -> None:
    tf = parse_timeframe("1h")
    first, last = grid("XNYS", "1h", SESSION, utc(2025, 11, 28), utc(2025, 11, 29))[[0, -1]]
    lo, hi = base_range_ns("XNYS", tf, SESSION, M1, int(first), int(last))
    assert (calendar.to_datetime(lo), calendar.to_datetime(hi)) == (
        utc(2025, 11, 28, 14, 30),
        utc(2025, 11, 28, 18),
    )
    week = calendar.to_ns(utc(2025, 11, 24))
    lo, hi = base_range_ns("XNYS", parse_timeframe("1w"), SESSION, M1, week, week)
    assert (calendar.to_datetime(lo), calendar.to_datetime(hi)) == (
        utc(2025, 11, 24, 14, 30),
        utc(2025, 11, 28, 18),
    )
    lo, hi = base_range_ns("XNYS", parse_timeframe("1w"), SESSION, D1, week, week)
    assert (lo, hi) == (calendar.to_ns(utc(2025, 11, 24)), calendar.to_ns(utc(2025, 11, 28)) + 1_000)
