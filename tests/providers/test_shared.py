"""The pieces every HTTP adapter shares: Retry-After, day stamps, calendar alignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_data.calendar import CalendarError
from market_data.providers.alignment import calendar_bars, fetch_window, session_date
from market_data.providers.http import retry_after_seconds
from market_data.records import Bar, Interval

from .support import http_date

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        (http_date(NOW + timedelta(seconds=30)), 30.0),
        (http_date(NOW - timedelta(seconds=30)), 0.0),  # already past: retry now
        ("Tue, 06 Jan 2026 12:00:00 GMT", 86400.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, NOW) == expected


@pytest.mark.parametrize(
    ("mic", "stamp", "session"),
    [
        (
            "XNAS",
            datetime(2019, 9, 24, 4, 0, tzinfo=UTC),
            datetime(2019, 9, 24, tzinfo=UTC),
        ),  # NY midnight, EDT
        (
            "XNYS",
            datetime(2022, 3, 9, 5, 0, tzinfo=UTC),
            datetime(2022, 3, 9, tzinfo=UTC),
        ),  # NY midnight, EST
        ("XNAS", datetime(2024, 10, 2, 13, 30, tzinfo=UTC), datetime(2024, 10, 2, tzinfo=UTC)),  # the open
        ("XNAS", datetime(2024, 10, 2, 0, 0, tzinfo=UTC), datetime(2024, 10, 2, tzinfo=UTC)),  # UTC midnight
        (
            "XTKS",
            datetime(2024, 10, 1, 15, 0, tzinfo=UTC),
            datetime(2024, 10, 2, tzinfo=UTC),
        ),  # Tokyo midnight
        ("XTKS", datetime(2024, 10, 2, 0, 0, tzinfo=UTC), datetime(2024, 10, 2, tzinfo=UTC)),  # Tokyo open
        (
            "XLON",
            datetime(2024, 10, 1, 23, 0, tzinfo=UTC),
            datetime(2024, 10, 2, tzinfo=UTC),
        ),  # London midnight, BST
    ],
)
def test_session_date_from_any_vendor_day_stamp(mic: str, stamp: datetime, session: datetime) -> None:
    assert session_date(mic, stamp) == session


def test_fetch_window_widens_days_and_rolled_up_bars_only() -> None:
    start, end = datetime(2024, 10, 2, tzinfo=UTC), datetime(2024, 10, 3, tzinfo=UTC)
    assert fetch_window(Interval.M1, start, end, finer=False) == (start, end)
    assert fetch_window(Interval.H1, start, end, finer=True) == (start, end + timedelta(hours=1))
    assert fetch_window(Interval.D1, start, end, finer=False) == (
        start - timedelta(days=1),
        end + timedelta(days=1),
    )


def minute(symbol: str, ts: datetime, close: float, volume: int = 100, vwap: float | None = None,
           trade_count: int | None = None) -> Bar:  # fmt: skip
    return Bar(symbol=symbol, interval=Interval.M15, ts=ts, open=close - 1, high=close + 1, low=close - 2,
               close=close, volume=volume, vwap=vwap, trade_count=trade_count, provider="v")  # fmt: skip


# Wednesday 2024-10-02, NYSE regular session 13:30-20:00Z
def at(hour: int, minute_: int) -> datetime:
    return datetime(2024, 10, 2, hour, minute_, tzinfo=UTC)


def test_extended_hours_and_unfinished_bars_are_dropped() -> None:
    vendor = [
        minute("AAPL", at(13, 15), 1.0),  # pre-market
        minute("AAPL", at(13, 30), 2.0),
        minute("AAPL", at(19, 45), 3.0),
        minute("AAPL", at(20, 0), 4.0),  # after hours
        minute("AAPL", at(20, 15), 5.0),
    ]
    got = calendar_bars(vendor, "XNYS", Interval.M15, at(0, 0), at(23, 59), NOW, "v")
    assert [b.close for b in got] == [2.0, 3.0]
    # at 19:50Z the 19:45 bar is still running
    got = calendar_bars(vendor, "XNYS", Interval.M15, at(0, 0), at(23, 59), at(19, 50), "v")
    assert [b.close for b in got] == [2.0]


def test_bars_are_limited_to_start_end_half_open() -> None:
    vendor = [
        minute("AAPL", at(13, 30), 1.0),
        minute("AAPL", at(13, 45), 2.0),
        minute("AAPL", at(14, 0), 3.0),
    ]
    got = calendar_bars(vendor, "XNYS", Interval.M15, at(13, 45), at(14, 0), NOW, "v")
    assert [b.close for b in got] == [2.0]


def test_finer_bars_roll_up_into_session_aligned_hours_per_symbol() -> None:
    vendor = [
        minute("MSFT", at(13, 0), 9.0),  # clock hour before the open: pre-market, dropped
        minute("AAPL", at(13, 30), 10.0, volume=100, vwap=10.0, trade_count=3),
        minute("AAPL", at(14, 0), 12.0, volume=300, vwap=12.0, trade_count=5),
        minute("MSFT", at(14, 0), 20.0, volume=50),  # no vwap: the hour has none either
        minute("AAPL", at(19, 30), 30.0),  # the short last hour 19:30-20:00Z
    ]
    got = calendar_bars(vendor, "XNYS", Interval.H1, at(0, 0), at(23, 59), NOW, "v")
    assert [(b.symbol, b.ts) for b in got] == [
        ("AAPL", at(13, 30)),
        ("AAPL", at(19, 30)),
        ("MSFT", at(13, 30)),
    ]
    aapl = got[0]
    assert (aapl.open, aapl.high, aapl.low, aapl.close) == (9.0, 13.0, 8.0, 12.0)
    assert aapl.volume == 400
    assert aapl.vwap == 11.5
    assert aapl.trade_count == 8
    assert aapl.interval is Interval.H1
    msft = got[2]
    # MSFT's hour holds one bar that does not start it: rolled up, stamped at the hour's start
    assert (msft.ts, msft.close, msft.volume, msft.vwap, msft.trade_count) == (
        at(13, 30),
        20.0,
        50,
        None,
        None,
    )


def test_non_session_days_yield_nothing_and_unknown_exchanges_fail_loudly() -> None:
    saturday = datetime(2024, 10, 5, tzinfo=UTC)
    assert calendar_bars([minute("AAPL", saturday, 1.0)], "XNYS", Interval.M15, saturday,
                         saturday + timedelta(days=1), NOW, "v") == []  # fmt: skip
    with pytest.raises(CalendarError):
        calendar_bars([], "XXXX", Interval.M15, saturday, saturday + timedelta(days=1), NOW, "v")
