"""Bars and helpers shared by the /stocks read tests (synthetic data of one known session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Bar, Interval

MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
MON_CLOSE = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
TUE_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
SEEN_AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
"""The provider's 'now' for generated bars: every bar above is complete by then."""

MON_RANGE = {"start": "2026-11-23T14:30:00Z", "end": "2026-11-23T21:00:00Z"}


def session_bars(
    symbol: str = "AAPL",
    interval: Interval = Interval.M1,
    start: datetime = MON_OPEN,
    minutes: int = 390,
    mic: str = "XNAS",
) -> list[Bar]:
    return SyntheticProvider().bars_for(
        symbol, mic, interval, start, start + timedelta(minutes=minutes), SEEN_AT
    )


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
