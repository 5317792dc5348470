"""Parameters of /stocks/*: annotated types (with their OpenAPI text and bounds), limits, checks."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar.params import Parameter

from api.errors import BadParameter
from api.schemas import UNAVAILABLE, ErrorBody, documented
from market_data.records import SYMBOL_REGEX, Interval, ensure_utc

MAX_LIMIT = 10_000
"""Largest page of /history and largest per-symbol count of /stocks/bars."""
MAX_SYMBOLS = 100
"""Most distinct symbols one /stocks/bars or /stocks/snapshots request may name."""
MAX_SPAN = {
    Interval.M1: timedelta(days=93),
    Interval.M5: timedelta(days=366),
    Interval.M15: timedelta(days=2 * 366),
    Interval.H1: timedelta(days=5 * 366),
    Interval.D1: timedelta(days=50 * 366),
}
"""Widest [start, end) one request may cover, per interval (pages walk inside it)."""
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


class OutputFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


class IntradayInterval(enum.StrEnum):
    """The intervals /intraday serves (a session has no daily bars to page through)."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"


_TICKER = SYMBOL_REGEX.replace("A-Z", "A-Za-z")  # requests may use lower case; handlers upper-case
SYMBOL_RE = rf"^{_TICKER}$"
SYMBOLS_RE = rf"^[ ,]*{_TICKER} *(,[ ,]*{_TICKER} *)*[ ,]*$"
"""Comma-separated tickers; spaces around them and empty items are ignored."""
SymbolPath = Annotated[
    str,
    Parameter(
        description="Ticker, e.g. AAPL, BRK.B, VOD.L, or crypto pair BTC-USD (case-insensitive)",
        max_length=15,
        pattern=SYMBOL_RE,
    ),
]
# Required and not nullable (`?symbols=null` is not a way to leave it out); a missing one is the
# usual 400 naming the parameter (api/errors.py).
SymbolsQuery = Annotated[
    str,
    Parameter(
        description=(
            f"Comma-separated tickers, case-insensitive; duplicates count once; at most {MAX_SYMBOLS}. "
            "Every symbol must be in the universe: unknown ones are a 404 that lists them."
        ),
        min_length=1,
        max_length=2000,
        # documented only: parse_symbols checks it, naming the offending ticker
        schema_extra={"pattern": SYMBOLS_RE},
    ),
]
IntervalQuery = Annotated[Interval, Parameter(description="Bar interval")]
IntradayIntervalQuery = Annotated[IntradayInterval, Parameter(description="Bar interval (intraday only)")]
StartQuery = Annotated[
    datetime | None,
    Parameter(
        description=(
            "Inclusive start (ISO 8601; UTC if no offset); at most the interval's maximum span before "
            "`end` (1m 93 days, 5m 366, 15m 732, 1h 1830, 1d 18300). Without it: the latest bars before "
            "`end`, pages walking back as far as data goes"
        )
    ),
]
EndQuery = Annotated[datetime | None, Parameter(description="Exclusive end (ISO 8601); default now")]
AsOfQuery = Annotated[
    datetime | None,
    Parameter(description="Point-in-time: each bar as known at this instant (default: now)"),
]
LimitQuery = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Maximum bars returned (page size)")]
SortQuery = Annotated[
    SortOrder,
    Parameter(description="`asc`: oldest first; `desc`: newest first (pages walk back from `end`)"),
]
FormatQuery = Annotated[
    OutputFormat | None,
    Parameter(
        description="`csv` streams the whole range as text/csv (same as `Accept: text/csv`); default JSON",
    ),
]
PageTokenQuery = Annotated[
    str | None,
    Parameter(
        max_length=1024,
        description=(
            "`next_page_token` of the previous page; repeat the first request's other parameters. "
            "It pins `as_of`, so later pages read the same versions even while new ones arrive."
        ),
    ),
]
TsQuery = Annotated[datetime, Parameter(description="Start of the bar (ISO 8601; UTC if no offset)")]

ERRORS = {
    400: documented(ErrorBody, description="A parameter is malformed or out of range; `parameter` names it"),
    404: documented(ErrorBody, description="The symbol is not in the universe"),
    503: UNAVAILABLE,
}


def instant(value: datetime | None, name: str) -> datetime:
    """`value` in UTC (naive = UTC), refused when missing or outside the years the store can hold."""
    if value is None:
        raise BadParameter(f"{name}: required", parameter=name)
    v = ensure_utc(value)
    if not EARLIEST <= v < LATEST:
        raise BadParameter(
            f"{name}: must be between {EARLIEST.date()} and {LATEST.date()}, got {v.isoformat()}",
            parameter=name,
        )
    return v


def bar_range(
    interval: Interval, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime | None, datetime]:
    """(start, end) of a bar read: end defaults to now; no start means no lower bound.

    Raises:
        BadParameter: start not before end, or a range wider than the interval's span.
    """
    end_ts = instant(end, "end") if end is not None else now
    if start is None:
        return None, end_ts
    start_ts = instant(start, "start")
    if start_ts >= end_ts:
        raise BadParameter("end: must be after start", parameter="end")
    span = MAX_SPAN[interval]
    if end_ts - start_ts > span:
        raise BadParameter(
            f"start: at most {span.days} days before end for {interval.value} bars; "
            "split the range into several requests",
            parameter="start",
        )
    return start_ts, end_ts
