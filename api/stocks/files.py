"""Bar reads as files (CSV or Parquet): format negotiation, the streamed response, its headers.

/history, /intraday and /stocks/bars answer JSON, or with `format=csv|parquet` (or an Accept
header preferring text/csv or application/vnd.apache.parquet) a file of the same rows in the
same order: every parameter applies as it does to JSON (`limit`, `sort`, `page_token`,
`as_of`, `interval`, `align`). What JSON carries beside the bars travels in headers:
`X-As-Of`, `X-Next-Page-Token` (/history; absent on the last page), `X-Truncated`
(/stocks/bars), `X-Session-Open` / `X-Session-Close` / `X-Market-Open` (/intraday), and for
an adjusted read `X-Adjustment` (the mode) and `X-Adjustment-Id` (the set's id; /stocks/bars:
`SYMBOL=id` pairs); the actions themselves are in the JSON body of the same request. A
/history file's `limit` may go up to MAX_FILE_LIMIT. Encodings: `csv_export` (text) and
`parquet_export` (typed columns); exports (`api.exports`) write their files with the same
`BarFileEncoder`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
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
from api.stocks.history import HistoryPage, IntradaySession
from api.stocks.multi import MultiBars
from api.stocks.params import OutputFormat
from market_data.adjustment import AdjustmentSet
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
class BarFileOperation(Operation):
    """OpenAPI operation of a bar read (/history, /intraday, /stocks/bars): its 200 is JSON, or
    CSV or Parquet when asked for."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            csv_schema = Schema(
                type=OpenAPIType.STRING,
                description=(
                    "Header row " + ",".join(csv_export.CSV_COLUMNS) + " (/stocks/bars: `symbol` first); "
                    "ISO 8601 UTC timestamps"
                ),
            )
            parquet_schema = Schema(
                type=OpenAPIType.STRING,
                format=OpenAPIFormat.BINARY,
                description=(
                    "An Apache Parquet file, columns " + ",".join(csv_export.CSV_COLUMNS) + " (/stocks/bars: "
                    "`symbol` first): ts and as_of "
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


class BarFileEncoder:
    """One CSV or Parquet file of bars, encoded a part at a time (a CSV chunk, a Parquet row group).

    With `with_symbol`, each row starts with its symbol (multi-symbol files, exports).
    """

    def __init__(self, fmt: OutputFormat, *, with_symbol: bool = False) -> None:
        if fmt is OutputFormat.JSON:
            raise ValueError("JSON is not a file format")
        self._with_symbol = with_symbol
        self._parquet = (
            parquet_export.ParquetStream(with_symbol=with_symbol) if fmt is OutputFormat.PARQUET else None
        )
        self._header: bytes | None = csv_export.csv_header(with_symbol=with_symbol).encode()

    def part(self, bars: Bars, symbol: str | None = None) -> bytes:
        """The bytes `bars` (of `symbol`) add to the file."""
        if self._parquet is not None:
            return self._parquet.write(bars, symbol)
        head, self._header = self._header or b"", None
        if not len(bars):
            return head
        return head + csv_export.csv_lines(bars, symbol=symbol if self._with_symbol else None).encode()

    def close(self) -> bytes:
        """The file's last bytes (Parquet's footer; a CSV file's header if nothing came before)."""
        if self._parquet is not None:
            return self._parquet.close()
        head, self._header = self._header or b"", None
        return head


def _chunks(bars: Bars) -> Iterator[Bars]:
    for i in range(0, len(bars), csv_export.CHUNK_ROWS):
        yield bars.take(slice(i, i + csv_export.CHUNK_ROWS))


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def bar_file(
    fmt: OutputFormat,
    bars_by_symbol: dict[str, Bars] | Bars,
    filename: str,
    headers: dict[str, str],
) -> FileStream:
    """A CSV or Parquet file of bars, streamed in chunks of CHUNK_ROWS bars.

    `bars_by_symbol` (several symbols, in order) gives a `symbol` column first; plain `Bars` none.
    """
    with_symbol = isinstance(bars_by_symbol, dict)
    parts = bars_by_symbol if isinstance(bars_by_symbol, dict) else {"": bars_by_symbol}

    async def encoded() -> AsyncIterator[bytes]:
        encoder = BarFileEncoder(fmt, with_symbol=with_symbol)
        for symbol, bars in parts.items():
            for chunk in _chunks(bars):
                if data := encoder.part(chunk, symbol):
                    yield data
        yield encoder.close()

    all_headers = {"Content-Disposition": f'attachment; filename="{filename}.{fmt.value}"', **headers}
    return FileStream(encoded(), media_type=MEDIA_TYPES[fmt], headers=all_headers)


def _adjustment_headers(sets: dict[str, AdjustmentSet], *, one: bool) -> dict[str, str]:
    """`X-Adjustment` and `X-Adjustment-Id` of an adjusted read (none for raw bars)."""
    if not sets:
        return {}
    mode = next(iter(sets.values())).mode.value
    ids = next(iter(sets.values())).id if one else ",".join(f"{s}={a.id}" for s, a in sets.items())
    return {"X-Adjustment": mode, "X-Adjustment-Id": ids}


def file_response(page: HistoryPage, fmt: OutputFormat) -> FileStream:
    """A /history page as a CSV or Parquet file."""
    w = page.window
    lo, hi = w.remaining()
    headers = {"X-As-Of": _iso(w.as_of)}
    if page.next_page_token is not None:
        headers["X-Next-Page-Token"] = page.next_page_token
    headers |= _adjustment_headers({w.symbol: page.adjustment} if page.adjustment else {}, one=True)
    return bar_file(
        fmt, page.bars, f"{w.symbol}_{w.timeframe}_{lo:%Y%m%dT%H%M%SZ}_{hi:%Y%m%dT%H%M%SZ}", headers
    )


def intraday_file(session: IntradaySession, fmt: OutputFormat) -> FileStream:
    """/intraday as a CSV or Parquet file; the session in `X-Session-Open`, `-Close`, `X-Market-Open`."""
    headers = {
        "X-Session-Open": _iso(session.session_open),
        "X-Session-Close": _iso(session.session_close),
        "X-Market-Open": "true" if session.market_open else "false",
        **_adjustment_headers(
            {session.listed.symbol: session.adjustment} if session.adjustment else {}, one=True
        ),
    }
    name = f"{session.listed.symbol}_{session.timeframe}_{session.session_open:%Y%m%dT%H%M%SZ}"
    return bar_file(fmt, session.bars, name, headers)


def multi_bars_file(result: MultiBars, fmt: OutputFormat) -> FileStream:
    """/stocks/bars as one CSV or Parquet file (`symbol` first; symbols in the order asked, each
    oldest first); `X-As-Of`, and `X-Truncated` listing the symbols with more bars in the range."""
    headers = {"X-As-Of": _iso(result.as_of)}
    if result.truncated:
        headers["X-Truncated"] = ",".join(result.truncated)
    headers |= _adjustment_headers(result.adjustments, one=False)
    return bar_file(fmt, result.bars, f"bars_{result.timeframe}_{result.end:%Y%m%dT%H%M%SZ}", headers)
