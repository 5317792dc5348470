"""Domain records shared by providers, ingest, backfill and the API.

Times are timezone-aware UTC datetimes. A bar's `ts` is the start of its interval;
daily bars are stamped with the session date at 00:00 UTC.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

SYMBOL_REGEX = r"[A-Z0-9][A-Z0-9.\-]{0,14}"
"""A ticker: 1-15 of A-Z, 0-9, '.', '-', starting with a letter or digit (unanchored, to compose)."""
SYMBOL_PATTERN = rf"^{SYMBOL_REGEX}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN, max_length=15)]
MIC = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{4}$")]


class Interval(enum.StrEnum):
    """Bar intervals the service stores."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        return _INTERVAL_SECONDS[self]

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=_INTERVAL_SECONDS[self])

    @property
    def is_intraday(self) -> bool:
        return self is not Interval.D1


_INTERVAL_SECONDS = {
    Interval.M1: 60,
    Interval.M5: 300,
    Interval.M15: 900,
    Interval.H1: 3600,
    Interval.D1: 86400,
}


class Tier(enum.StrEnum):
    """Symbol tiers: T0 is swept most often."""

    T0 = "T0"
    T1 = "T1"
    T2 = "T2"


def is_valid_symbol(symbol: str) -> bool:
    return bool(_SYMBOL_RE.match(symbol))


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """One OHLCV bar as a provider delivered it."""

    symbol: str
    interval: Interval
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Shares, contracts or coins traded: fractional for crypto pairs (0.01 BTC)."""
    provider: str
    vwap: float | None = None
    trade_count: int | None = None
    status: str = "final"


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """Top of book plus last trade at `ts`."""

    symbol: str
    ts: datetime
    provider: str
    last: float
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    """Fractional for crypto pairs, like volumes."""
    ask_size: float | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def run_instant(data_interval_end: datetime | None, wall: datetime | None = None) -> datetime:
    """The instant a scheduled run covers: its data interval's end, never in the future.

    Sweeps and SLO samples both measure at this instant, so a re-run of a run covers the same
    instant as the run did. `wall` is the clock (default: now).
    """
    now = ensure_utc(wall or utcnow())
    if data_interval_end is None:
        return now
    return min(ensure_utc(data_interval_end), now)


def ensure_utc(value: datetime) -> datetime:
    """Return `value` as a plain `datetime` in UTC; naive datetimes are taken to be UTC.

    Subclasses (pendulum's DateTime from Airflow contexts) become plain datetimes, which
    every encoder understands.
    """
    v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)
