"""/history as CSV: the whole range streamed in keyset chunks, for pandas and spreadsheets.

`pd.read_csv(url, parse_dates=["ts"])` gives one row per bar: ISO 8601 UTC timestamps
(`Z`), empty cells for missing vwap/trade_count. The range is counted first (capped), so a
range that is too big is a clear 400 before any byte is sent; then each chunk is one
index range scan after the previous one, all at the same `as_of`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Request
from litestar.enums import MediaType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.response import Stream

from api.errors import BadParameter
from api.schemas import quantity
from api.stocks import queries
from api.stocks.history import read_page
from api.stocks.pagination import HistoryWindow
from api.stocks.params import OutputFormat, SortOrder

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
MAX_CSV_ROWS = 200_000
"""Most bars one CSV download streams."""
CHUNK_ROWS = 5_000
CSV_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count", "provider", "as_of")


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


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _iso_us(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def csv_lines(rows: Sequence[asyncpg.Record]) -> str:
    """CSV lines of rows selected as `queries.BAR_COLUMNS`."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        (_iso(ts), o, h, lo, c, quantity(v), vw, n, p, _iso_us(a)) for ts, o, h, lo, c, v, vw, n, p, a in rows
    )
    return buf.getvalue()


async def _chunks(db: asyncpg.Pool, window: HistoryWindow) -> AsyncIterator[str]:
    yield ",".join(CSV_COLUMNS) + "\n"
    w: HistoryWindow | None = window
    while w is not None:
        rows, w = await read_page(db, w, CHUNK_ROWS)
        if rows:
            yield csv_lines(rows)


async def csv_response(db: asyncpg.Pool, window: HistoryWindow) -> CsvStream:
    """Every bar of the window not served yet (all of it without a page token), in `sort` order.

    Raises:
        BadParameter: the range holds more than MAX_CSV_ROWS bars.
    """
    lo, hi = window.remaining()
    # Stream oldest first for `asc`: a JSON tail read walks back, a download need not.
    w = msgspec.structs.replace(window, start=lo, end=hi, cursor=None, backward=window.sort is SortOrder.DESC)
    n = await queries.count_bars(db, w.symbol, w.interval, lo, hi, w.as_of, MAX_CSV_ROWS + 1)
    if n > MAX_CSV_ROWS:
        raise BadParameter(
            f"start: [{lo.isoformat()}, {hi.isoformat()}) holds more than {MAX_CSV_ROWS} "
            f"{w.interval.value} bars, the most one CSV download streams; request shorter ranges",
            parameter="start",
        )
    filename = f"{w.symbol}_{w.interval.value}_{lo:%Y%m%dT%H%M%SZ}_{hi:%Y%m%dT%H%M%SZ}.csv"
    return CsvStream(
        _chunks(db, w),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
