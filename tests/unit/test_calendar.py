"""Calendar golden cases: holidays, early closes, DST switches, lunch breaks, other exchanges.

Expected values are the exchanges' published schedules (New York 09:30-16:00, early close
13:00; London 08:00-16:30; Tokyo 09:00-11:30 and 12:30-15:30 since 5 November 2024).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from market_data import calendar
from market_data.records import Interval


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def day(mic: str, interval: Interval, y: int, m: int, d: int) -> list[datetime]:
    return calendar.expected_bar_times(mic, interval, utc(y, m, d), utc(y, m, d, 23, 59))


GOLDEN = [
    # (case, mic, interval, date, count, first bar (UTC), last bar (UTC))
    ("regular NYSE day", "XNYS", Interval.M1, (2026, 11, 24), 390, (14, 30), (20, 59)),
    ("Thanksgiving: closed", "XNYS", Interval.M1, (2026, 11, 26), 0, None, None),
    ("day after Thanksgiving: closes 13:00", "XNYS", Interval.M1, (2026, 11, 27), 210, (14, 30), (17, 59)),
    ("early close, 5m", "XNYS", Interval.M5, (2026, 11, 27), 42, (14, 30), (17, 55)),
    ("early close, 1h: last bar is short", "XNYS", Interval.H1, (2026, 11, 27), 4, (14, 30), (17, 30)),
    ("regular day, 1h aligned to the open", "XNYS", Interval.H1, (2026, 11, 24), 7, (14, 30), (20, 30)),
    ("Friday before the spring DST switch (EST)", "XNYS", Interval.M1, (2026, 3, 6), 390, (14, 30), (20, 59)),
    ("Monday after the spring DST switch (EDT)", "XNYS", Interval.M1, (2026, 3, 9), 390, (13, 30), (19, 59)),
    (
        "Friday before the autumn DST switch (EDT)",
        "XNYS",
        Interval.M1,
        (2026, 10, 30),
        390,
        (13, 30),
        (19, 59),
    ),
    ("Monday after the autumn DST switch (EST)", "XNYS", Interval.M1, (2026, 11, 2), 390, (14, 30), (20, 59)),
    ("weekend", "XNAS", Interval.M1, (2026, 11, 28), 0, None, None),
    ("London in winter (GMT)", "XLON", Interval.M1, (2026, 11, 24), 510, (8, 0), (16, 29)),
    ("London in summer (BST)", "XLON", Interval.M1, (2026, 7, 14), 510, (7, 0), (15, 29)),
    ("Tokyo with its lunch break", "XTKS", Interval.M1, (2026, 11, 24), 330, (0, 0), (6, 29)),
    ("Tokyo 1h: bars restart after lunch", "XTKS", Interval.H1, (2026, 11, 24), 6, (0, 0), (5, 30)),
    ("Tokyo holiday (Labour Thanksgiving, observed)", "XTKS", Interval.M1, (2026, 11, 23), 0, None, None),
    ("crypto on a Saturday: every minute", "C247", Interval.M1, (2026, 11, 28), 1439, (0, 0), (23, 58)),
    ("crypto on Thanksgiving", "C247", Interval.H1, (2026, 11, 26), 24, (0, 0), (23, 0)),
    ("crypto on a DST switch day: 24 UTC hours", "C247", Interval.H1, (2026, 3, 8), 24, (0, 0), (23, 0)),
]


@pytest.mark.parametrize("case,mic,interval,date,count,first,last", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_expected_bars_golden(case, mic, interval, date, count, first, last) -> None:
    bars = day(mic, interval, *date)
    assert len(bars) == count
    if count:
        assert (bars[0].hour, bars[0].minute) == first
        assert (bars[-1].hour, bars[-1].minute) == last


def test_tokyo_has_no_bars_during_lunch() -> None:
    bars = day("XTKS", Interval.M1, 2026, 11, 24)
    lunch = [b for b in bars if utc(2026, 11, 24, 2, 30) <= b < utc(2026, 11, 24, 3, 30)]
    assert lunch == []
    hours = day("XTKS", Interval.H1, 2026, 11, 24)
    assert [h.strftime("%H:%M") for h in hours] == ["00:00", "01:00", "02:00", "03:30", "04:30", "05:30"]


def test_daily_bars_carry_the_session_date() -> None:
    week = calendar.expected_bar_times("XNYS", Interval.D1, utc(2026, 11, 23), utc(2026, 11, 30))
    assert [d.day for d in week] == [23, 24, 25, 27]  # Thanksgiving missing
    assert all(d.hour == 0 for d in week)


def test_bar_ends_are_clipped_to_the_close() -> None:
    import numpy as np

    starts = np.array([calendar.to_ns(utc(2026, 11, 27, 17, 30)), calendar.to_ns(utc(2026, 11, 24, 20, 30))])
    ends = calendar.bar_end_ns("XNYS", Interval.H1, starts)
    assert [calendar.to_datetime(e) for e in ends] == [utc(2026, 11, 27, 18, 0), utc(2026, 11, 24, 21, 0)]
    day_end = calendar.bar_end_ns("XNYS", Interval.D1, np.array([calendar.to_ns(utc(2026, 11, 27))]))
    assert calendar.to_datetime(day_end[0]) == utc(2026, 11, 27, 18, 0)


def test_open_now_and_session_windows() -> None:
    assert calendar.is_open_at("XNYS", utc(2026, 11, 24, 15, 0))
    assert not calendar.is_open_at("XNYS", utc(2026, 11, 24, 21, 0))
    assert not calendar.is_open_at("XTKS", utc(2026, 11, 24, 3, 0))  # lunch
    opened, closed, is_open = calendar.session_window("XNYS", utc(2026, 11, 26, 12, 0))
    assert (opened, closed, is_open) == (utc(2026, 11, 25, 14, 30), utc(2026, 11, 25, 21, 0), False)
    assert calendar.last_completed_session_open("XNYS", utc(2026, 11, 24, 15, 0)) == utc(2026, 11, 23, 14, 30)


def test_calendars_are_built_once_per_process() -> None:
    assert calendar.exchange_calendar("XNYS") is calendar.exchange_calendar("XNYS")


def test_bad_questions_name_the_parameter() -> None:
    with pytest.raises(calendar.CalendarError, match="exchange_mic"):
        calendar.exchange_calendar("XXXX")
    with pytest.raises(calendar.CalendarError, match="start"):
        calendar.expected_bar_times("XNYS", Interval.M1, utc(1990, 1, 1), utc(1990, 1, 2))


def test_the_24_7_calendar_expects_every_minute_across_midnight_and_weekends() -> None:
    friday_night, monday_morning = utc(2026, 11, 27, 23, 0), utc(2026, 11, 30, 1, 0)
    minutes = calendar.expected_bar_times("C247", Interval.M1, friday_night, monday_morning)
    assert len(minutes) == 50 * 60  # Friday 23:00 to Monday 01:00, not one minute missing
    assert all(b - a == Interval.M1.delta for a, b in itertools.pairwise(minutes))
    assert utc(2026, 11, 28, 0, 0) in minutes and utc(2026, 11, 29, 0, 0) in minutes
    days = calendar.expected_bar_times("C247", Interval.D1, utc(2026, 11, 23), utc(2026, 11, 30))
    assert [d.day for d in days] == [23, 24, 25, 26, 27, 28, 29]  # UTC days, Thanksgiving too


def test_24_7_sessions_are_utc_days() -> None:
    import numpy as np

    midnight = utc(2026, 11, 29)
    assert calendar.is_open_at("C247", midnight)
    assert calendar.is_open_at("C247", utc(2026, 11, 28, 23, 59, 59))
    assert calendar.session_window("C247", utc(2026, 11, 28, 13, 0)) == (
        utc(2026, 11, 28),
        utc(2026, 11, 29),
        True,
    )
    # a day's session completes at the next midnight, and not before
    assert calendar.last_completed_session_open("C247", midnight) == utc(2026, 11, 28)
    assert calendar.last_completed_session_open("C247", utc(2026, 11, 28, 23, 59)) == utc(2026, 11, 27)
    last_minute = np.array([calendar.to_ns(utc(2026, 11, 28, 23, 59))])
    saturday = np.array([calendar.to_ns(utc(2026, 11, 28))])
    assert calendar.to_datetime(calendar.bar_end_ns("C247", Interval.M1, last_minute)[0]) == midnight
    assert calendar.to_datetime(calendar.bar_end_ns("C247", Interval.D1, saturday)[0]) == midnight
    assert calendar.sessions_open_between("C247", utc(2026, 11, 28, 12, 0), utc(2026, 11, 28, 12, 1))


def test_the_24_7_session_table_comes_back_from_the_disk_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MARKET_DATA_CACHE_DIR", str(tmp_path))
    built = calendar._Sessions.build("C247")
    path = calendar._cache_file("C247")
    assert path is not None and path.parent == tmp_path and "C247" in path.name
    built.save(path)
    loaded = calendar._Sessions.load("C247", path)
    assert loaded is not None and loaded.mic == "C247"
    assert (loaded.opens == built.opens).all() and (loaded.closes == built.closes).all()
    assert (loaded.opens[1:] == loaded.closes[:-1]).all()  # each day closes as the next opens
