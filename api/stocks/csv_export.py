"""/history as CSV: the same page of bars as the JSON body, for pandas and spreadsheets.

Every parameter applies as it does to JSON (`limit`, `sort`, `page_token`, `as_of`, `interval`,
`align`), so a CSV page holds the rows of the JSON page of the same request; `limit` may go up
to MAX_FILE_LIMIT. `pd.read_csv(url, parse_dates=["ts", "as_of"])` gives one row per bar: ISO
8601 UTC timestamps (`Z`), empty cells for a missing vwap or trade_count and for `base_bars`
of a bar read as stored, `complete` as true/false. The next page's token is the
`X-Next-Page-Token` header (absent on the last page); `X-As-Of` is the read's `as_of`; an
adjusted read (`adjustment`) says its mode and the id of its set of actions in `X-Adjustment`
and `X-Adjustment-Id` (the actions themselves: the JSON page of the same request).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from litestar import Request
from litestar.enums import MediaType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Stream

from api.stocks.history import HistoryPage
from api.stocks.params import OutputFormat
from api.stocks.schemas import BAR_FIELDS, field_columns
from market_data.aggregate import Bars

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
CHUNK_ROWS = 5_000
CSV_COLUMNS = BAR_FIELDS


@dataclass
class HistoryOperation(Operation):
    """OpenAPI operation of /history: its 200 is JSON, or CSV when negotiated."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            csv_schema = Schema(
                type=OpenAPIType.STRING,
                description="Header row " + ",".join(CSV_COLUMNS) + "; ISO 8601 UTC timestamps",
            )
            ok.content = {**(ok.content or {}), "text/csv": OpenAPIMediaType(schema=csv_schema)}


class CsvStream(Stream):
    """A Stream that keeps its own media type.

    Litestar 2's Stream lets the route handler's media type (JSON here, for the JSON body of
    the same route) override the one given to the response; CSV must stay text/csv.
    """

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def wants_csv(request: Request, fmt: OutputFormat | None) -> bool:
    """`format` wins; otherwise CSV when the Accept header prefers text/csv to JSON."""
    if fmt is not None:
        return fmt is OutputFormat.CSV
    accept = request.headers.get("accept")
    if not accept or "text/" not in accept:  # the common */* and application/json: no parsing
        return False
    try:
        best = request.accept.best_match([MediaType.JSON.value, "text/csv"], default="")
    except (ValueError, ArithmeticError):  # a malformed header (e.g. q=1e999) gets the default
        return False
    return best == "text/csv"


def _iso(ns: np.ndarray, unit: Literal["s", "us"]) -> list[str]:
    as_datetimes: np.ndarray[Any, np.dtype[np.datetime64]] = ns.astype("datetime64[ns]")
    return np.datetime_as_string(as_datetimes, unit=unit, timezone="UTC").tolist()


def csv_lines(bars: Bars) -> str:
    """CSV lines of `bars` (no header), in their order."""
    whole_seconds = not (bars.ts % 1_000_000_000).any()
    columns = field_columns(bars, _iso(bars.ts, "s" if whole_seconds else "us"), _iso(bars.as_of, "us"))
    complete = BAR_FIELDS.index("complete")
    columns[complete] = ["true" if c else "false" for c in columns[complete]]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(zip(*columns, strict=True))
    return buf.getvalue()


async def _chunks(bars: Bars) -> AsyncIterator[str]:
    yield ",".join(CSV_COLUMNS) + "\n"
    for i in range(0, len(bars), CHUNK_ROWS):
        yield csv_lines(bars.take(slice(i, i + CHUNK_ROWS)))


def csv_response(page: HistoryPage) -> CsvStream:
    """The page as text/csv, streamed in chunks of CHUNK_ROWS bars."""
    w = page.window
    lo, hi = w.remaining()
    filename = f"{w.symbol}_{w.timeframe}_{lo:%Y%m%dT%H%M%SZ}_{hi:%Y%m%dT%H%M%SZ}.csv"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-As-Of": w.as_of.isoformat().replace("+00:00", "Z"),
    }
    if page.next_page_token is not None:
        headers["X-Next-Page-Token"] = page.next_page_token
    if page.adjustment is not None:
        headers["X-Adjustment"] = page.adjustment.mode.value
        headers["X-Adjustment-Id"] = page.adjustment.id
    return CsvStream(_chunks(page.bars), media_type=CSV_MEDIA_TYPE, headers=headers)
