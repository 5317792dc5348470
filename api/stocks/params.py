"""Parameters of /stocks/*: annotated types (with their OpenAPI text and bounds), limits, checks."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from litestar.params import Parameter

from api.errors import BadParameter
from api.schemas import UNAVAILABLE, ErrorBody, documented
from market_data.adjustment import ADJUSTMENTS_TEXT, Adjustment
from market_data.records import SYMBOL_REGEX, Interval, ensure_utc
from market_data.timeframes import (
    TIMEFRAME_PATTERN,
    TIMEFRAMES_TEXT,
    Align,
    Timeframe,
    TimeframeError,
    parse_timeframe,
)

MAX_LIMIT = 10_000
"""Largest JSON page of /history and largest per-symbol count of /stocks/bars."""
MAX_FILE_LIMIT = 200_000
"""Largest page of /history as a file (CSV or Parquet)."""
MAX_SYMBOLS = 100
"""Most distinct symbols one /stocks/bars or /stocks/snapshots request may name."""
MAX_SPAN = {
    Interval.M1: timedelta(days=93),
    Interval.M5: timedelta(days=366),
    Interval.M15: timedelta(days=2 * 366),
    Interval.H1: timedelta(days=5 * 366),
    Interval.D1: timedelta(days=50 * 366),
}
"""Widest [start, end) one request may cover, per stored interval (pages walk inside it)."""


def max_span(timeframe: Timeframe) -> timedelta:
    """Widest [start, end) of a timeframe: the span of the longest stored interval not longer than it."""
    if not timeframe.is_intraday:
        return MAX_SPAN[Interval.D1]
    fitting = [iv for iv in MAX_SPAN if iv.is_intraday and iv.seconds <= timeframe.minutes * 60]
    return MAX_SPAN[max(fitting, key=lambda iv: iv.seconds)]


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


class OutputFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


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
IntervalQuery = Annotated[
    str,
    Parameter(
        description=(
            f"Bar timeframe: {TIMEFRAMES_TEXT}. A timeframe stored for the symbol is read as stored; "
            "any other is built from the finest stored interval that divides it, aligned to the "
            "exchange's sessions (see `align`); each built bar says whether it is `complete`"
        ),
        max_length=4,
        # documented only: parse_interval checks it and says what is allowed
        schema_extra={"pattern": TIMEFRAME_PATTERN},
    ),
]
StoredIntervalQuery = Annotated[Interval, Parameter(description="A stored bar interval")]
CoverageIntervalQuery = Annotated[
    str | None,
    Parameter(
        description=(
            f"The interval to count: {TIMEFRAMES_TEXT} (default: the symbol's finest stored interval); "
            "a timeframe that is built counts the stored interval it is built from"
        ),
        max_length=4,
        schema_extra={"pattern": TIMEFRAME_PATTERN},
    ),
]
IntradayIntervalQuery = Annotated[
    str,
    Parameter(
        description="Bar timeframe, intraday only: N minutes (1m-59m) or N hours (1h-23h)",
        max_length=4,
        schema_extra={"pattern": TIMEFRAME_PATTERN},
    ),
]
AlignQuery = Annotated[
    Align,
    Parameter(
        description=(
            "Where built intraday bars start: `session` (default) at the open and after a lunch break, "
            "in steps of the timeframe (New York 1h: 09:30, 10:30, ...); `clock` at multiples of the "
            "timeframe since local midnight (New York 1h: 09:30-10:00, 10:00, 11:00, ...). Either way "
            "no bar spans a session boundary or a lunch break"
        )
    ),
]
StartQuery = Annotated[
    datetime | None,
    Parameter(
        description=(
            "Inclusive start (ISO 8601; UTC if no offset); at most the interval's maximum span before "
            "`end` (1m-4m 93 days, 5m-14m 366, 15m-59m 732, 1h-23h 1830, 1d and longer 18300). Without "
            "it: the latest bars before "
            "`end`, pages walking back as far as data goes"
        )
    ),
]
EndQuery = Annotated[datetime | None, Parameter(description="Exclusive end (ISO 8601); default now")]
AsOfQuery = Annotated[
    datetime | None,
    Parameter(description="Point-in-time: each bar as known at this instant (default: now)"),
]
AdjustmentQuery = Annotated[
    Adjustment,
    Parameter(
        description=(
            f"Corporate-action adjustment: {ADJUSTMENTS_TEXT}. Only the actions known at `as_of` apply; "
            "the response's `adjustment` lists them with an `id` of the set (CSV: the `X-Adjustment-Id` "
            "header), so two reads can be compared. A symbol without a security master entry reads raw only"
        )
    ),
]
PriceAsOfQuery = Annotated[
    datetime | None,
    Parameter(
        description="Point-in-time: the newest quote and bars as stored at this instant (default: now)"
    ),
]
JsonLimitQuery = Annotated[
    int, Parameter(ge=1, le=MAX_LIMIT, description="Maximum bars returned (page size)")
]
LimitQuery = Annotated[
    int,
    Parameter(
        ge=1, le=MAX_FILE_LIMIT, description=f"Maximum bars returned (page size; JSON at most {MAX_LIMIT})"
    ),
]
SortQuery = Annotated[
    SortOrder,
    Parameter(description="`asc`: oldest first; `desc`: newest first (pages walk back from `end`)"),
]
FormatQuery = Annotated[
    OutputFormat | None,
    Parameter(
        description=(
            "`csv`: the same bars as the JSON page, as text/csv (same as `Accept: text/csv`); "
            "`parquet`: as an Apache Parquet file with typed columns (same as "
            "`Accept: application/vnd.apache.parquet`). "
            f"A file's `limit` goes up to {MAX_FILE_LIMIT}; the next page's token is in the "
            "`X-Next-Page-Token` header, the read's `as_of` in `X-As-Of`. Default JSON"
        ),
    ),
]
FileFormatQuery = Annotated[
    OutputFormat | None,
    Parameter(
        description=(
            "`csv` (same as `Accept: text/csv`) or `parquet` (typed columns; same as "
            "`Accept: application/vnd.apache.parquet`): the same bars as the JSON body as a file, what "
            "JSON holds beside them in `X-` headers. Default JSON"
        ),
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


def choosing_date(start: datetime | None, end: datetime | None) -> date | None:
    """The date that chooses the security of a ticker several securities had: `start`, else
    `end`; None when the request names neither."""
    given = start if start is not None else end
    return None if given is None else ensure_utc(given).date()


def parse_interval(value: str, parameter: str = "interval") -> Timeframe:
    """The timeframe of an `interval` parameter; 400 naming it and what is allowed."""
    try:
        return parse_timeframe(value)
    except TimeframeError as exc:
        raise BadParameter(f"{parameter}: {exc}", parameter=parameter) from None


def check_limit(limit: int, *, as_file: bool) -> int:
    """`limit` within the bound of the response's format."""
    if not as_file and limit > MAX_LIMIT:
        raise BadParameter(
            f"limit: at most {MAX_LIMIT} bars per JSON page (a CSV or Parquet page takes up to "
            f"{MAX_FILE_LIMIT})",
            parameter="limit",
        )
    return limit


def bar_range(
    timeframe: Timeframe, start: datetime | None, end: datetime | None, now: datetime
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
    span = max_span(timeframe)
    if end_ts - start_ts > span:
        raise BadParameter(
            f"start: at most {span.days} days before end for {timeframe.value} bars; "
            "split the range into several requests",
            parameter="start",
        )
    return start_ts, end_ts
