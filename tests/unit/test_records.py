"""Domain records and the clock every scheduled run shares (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.records import run_instant

HOUR = timedelta(hours=1)


def test_a_run_covers_its_data_interval_end_never_the_future() -> None:
    end = datetime(2026, 11, 23, 16, tzinfo=UTC)
    assert run_instant(end, end + HOUR) == end
    assert run_instant(end, end - HOUR) == end - HOUR  # a run that starts early covers now
    assert run_instant(None, end) == end
    # a naive data interval end is UTC, and what comes back is a plain UTC datetime
    got = run_instant(datetime(2026, 11, 23, 16), end + HOUR)
    assert got == end and type(got) is datetime and got.tzinfo is UTC
    assert run_instant(None) <= datetime.now(UTC)
