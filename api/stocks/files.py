"""/history as a file (CSV or Parquet): format negotiation, the streamed response, its headers.

Every parameter applies to a file as it does to JSON (`limit`, `sort`, `page_token`, `as_of`,
`interval`, `align`), so a file holds the rows of the JSON page of the same request, in the
same order; `limit` may go up to MAX_FILE_LIMIT. The next page's token is the
`X-Next-Page-Token` header (absent on the last page); `X-As-Of` is the read's `as_of`.
Encodings: `csv_export` (text) and `parquet_export` (typed columns).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.enums import MediaType
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.response import Stream

from api.stocks import csv_export, parquet_export
from api.stocks.history import HistoryPage
from api.stocks.params import OutputFormat
from market_data.aggregate import Bars

MEDIA_TYPES = {
    OutputFormat.CSV: csv_export.CSV_MEDIA_TYPE,
    OutputFormat.PARQUET: parquet_export.PARQUET_MEDIA_TYPE,
}
_NEGOTIATED = {
    MediaType.JSON.value: OutputFormat.JSON,
    "text/csv": OutputFormat.CSV,
    parquet_export.PARQUET_MEDIA_TYPE: OutputFormat.PARQUET,
}


@dataclass
class HistoryOperation(Operation):
    """OpenAPI operation of /history: its 200 is JSON, or CSV or Parquet when asked for."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            csv_schema = Schema(
                type=OpenAPIType.STRING,
                description="Header row " + ",".join(csv_export.CSV_COLUMNS) + "; ISO 8601 UTC timestamps",
            )
            parquet_schema = Schema(
                type=OpenAPIType.STRING,
                format=OpenAPIFormat.BINARY,
                description=(
                    "An Apache Parquet file, columns " + ",".join(csv_export.CSV_COLUMNS) + ": ts and as_of "
                    "timestamp[us, UTC], prices, volume and vwap float64, trade_count and base_bars int64 "
                    "(null when unknown / read as stored), provider string, complete bool"
                ),
            )
            ok.content = {
                **(ok.content or {}),
                "text/csv": OpenAPIMediaType(schema=csv_schema),
                parquet_export.PARQUET_MEDIA_TYPE: OpenAPIMediaType(schema=parquet_schema),
            }


class FileStream(Stream):
    """A Stream that keeps its own media type.

    Litestar 2's Stream lets the route handler's media type (JSON here, for the JSON body of
    the same route) override the one given to the response; a file must keep its own.
    """

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def response_format(request: Request, fmt: OutputFormat | None) -> OutputFormat:
    """`format` wins; otherwise the Accept header's preference among JSON, CSV and Parquet."""
    if fmt is not None:
        return fmt
    accept = request.headers.get("accept")
    if not accept or ("text/" not in accept and "parquet" not in accept):
        return OutputFormat.JSON  # the common */* and application/json: no parsing
    try:
        best = request.accept.best_match(list(_NEGOTIATED), default=MediaType.JSON.value)
    except (ValueError, ArithmeticError):  # a malformed header (e.g. q=1e999) gets the default
        return OutputFormat.JSON
    return _NEGOTIATED.get(best or "", OutputFormat.JSON)


def _row_groups(bars: Bars) -> Iterator[Bars]:
    for i in range(0, len(bars), csv_export.CHUNK_ROWS):
        yield bars.take(slice(i, i + csv_export.CHUNK_ROWS))


async def _encoded(bars: Bars, fmt: OutputFormat) -> AsyncIterator[bytes | str]:
    if fmt is OutputFormat.CSV:
        for chunk in csv_export.csv_chunks(_row_groups(bars)):
            yield chunk
    else:
        for data in parquet_export.parquet_chunks(_row_groups(bars)):
            yield data


def file_response(page: HistoryPage, fmt: OutputFormat) -> FileStream:
    """The page as a CSV or Parquet file, streamed in chunks of CHUNK_ROWS bars."""
    w = page.window
    lo, hi = w.remaining()
    extension = fmt.value
    filename = f"{w.symbol}_{w.timeframe}_{lo:%Y%m%dT%H%M%SZ}_{hi:%Y%m%dT%H%M%SZ}.{extension}"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-As-Of": w.as_of.isoformat().replace("+00:00", "Z"),
    }
    if page.next_page_token is not None:
        headers["X-Next-Page-Token"] = page.next_page_token
    return FileStream(_encoded(page.bars, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)
