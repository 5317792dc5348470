"""A bulk export of bars as one streamed zip: a file per symbol, then the manifest.

    bars/AAPL.parquet   bars/MSFT.parquet   ...   manifest.json

Each symbol is read page by page (at most `plan.PAGE_ROWS` bars, through `bar_reads` like
every other bar read; the next page is read while this one is encoded) and each page is
encoded (a CSV chunk, a Parquet row group), hashed and written to the zip as it comes, so
neither the export nor one symbol of it is ever held whole. The manifest comes last because
it holds what only the end knows: each file's row count, size and sha256.

The bytes are a function of the request and the store as known at `as_of`: zip entries carry
a fixed date (1980-01-01) and no extra fields, the manifest holds no wall-clock time, and
pages (hence row groups) fall where the same reads put them. Re-running the manifest's
`request` gives the same files, the same checksums and the same zip, whatever was written
since (as long as retention has not purged the range). A Parquet file's bytes also depend on
the writer (`writer` in the manifest: a different pyarrow may encode the same rows
differently); a CSV file's only on the rows.

A read that fails mid-stream ends the response without the zip's central directory: the
client gets a file no zip reader opens, never a partial export that looks whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlencode

import asyncpg
import msgspec

from api.exports.plan import ExportPlan, SymbolExport
from api.schemas import ResponseModel
from api.state import AppResources
from api.stocks import parquet_export
from api.stocks.files import BarFileEncoder
from api.stocks.params import OutputFormat
from api.stocks.schemas import AdjustmentOut, adjustment_out
from market_data import calendar
from market_data.aggregate import Bars
from market_data.bar_reads import BarPage, BarRead, read_bars, read_window

T = TypeVar("T")
FORMAT_VERSION = 1
"""Version of the export's layout (files, columns, manifest fields); raised when any changes."""
ZIP_MEDIA_TYPE = "application/zip"
MANIFEST_NAME = "manifest.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_COMPRESSION = {OutputFormat.CSV: zipfile.ZIP_DEFLATED, OutputFormat.PARQUET: zipfile.ZIP_STORED}
"""CSV text compresses several times over; Parquet is compressed already."""


class ExportedFile(ResponseModel, kw_only=True):
    symbol: str
    exchange_mic: str
    path: str
    """The file's name in the zip."""
    built_from: str | None
    """The stored interval the bars were built from; null when read as stored."""
    rows: int
    bytes: int
    sha256: str
    """Of the file's bytes (as extracted from the zip)."""
    adjustment: AdjustmentOut | None = None
    """The corporate actions applied to the file's bars (known at `as_of`); null: raw."""


class ExportManifest(ResponseModel, kw_only=True):
    format_version: int
    kind: str = "bars"
    as_of: datetime
    """Every bar is the version known at this instant (given, or the export's start, resolved once)."""
    policy_version: int | None
    """The policy version active at `as_of`."""
    interval: str
    align: str
    adjustment: str
    """`raw`, `split`, `dividend` or `all`; each file lists the actions it applied."""
    start: datetime
    end: datetime
    format: str
    writer: str
    """What encoded the files: `pyarrow <version>` for Parquet, `csv` for CSV."""
    symbols: list[str]
    rows: int
    files: list[ExportedFile]
    request: dict[str, str]
    """The query parameters that reproduce this export exactly (`as_of` included)."""
    url: str
    """The same, as the path and query of a GET."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def reproducing_request(plan: ExportPlan) -> dict[str, str]:
    """The query parameters of an export that gives exactly this one's files."""
    return {
        "symbols": ",".join(s.symbol for s in plan.symbols),
        "interval": plan.timeframe.value,
        "align": plan.align.value,
        "start": _iso(plan.start),
        "end": _iso(plan.end),
        "as_of": _iso(plan.as_of),
        "format": plan.format.value,
        "adjustment": plan.adjustment.value,
    }


def export_filename(plan: ExportPlan) -> str:
    return (
        f"bars_{plan.timeframe.value}_{plan.start:%Y%m%dT%H%M%SZ}_{plan.end:%Y%m%dT%H%M%SZ}"
        f"_asof_{plan.as_of:%Y%m%dT%H%M%S%fZ}.zip"
    )


async def _pages(resources: AppResources, plan: ExportPlan, s: SymbolExport) -> AsyncIterator[Bars]:
    """The symbol's bars in [start, end) known at `as_of`, oldest first, a page at a time.

    A stored timeframe is read in windows of at most PAGE_ROWS bars the calendar expects (one
    index scan each, `read_window`); a built one in pages of `page_rows` built bars.
    """
    if s.base.value == plan.timeframe.value:
        for lo, hi in plan.windows(s):
            window = plan.read(s, lo, hi)

            async def stored(db: asyncpg.Pool, read: BarRead = window) -> Bars:
                return await read_window(db, read, s.adjustment)

            bars = await resources.reads.run(stored, as_of=plan.as_of)
            if len(bars):
                yield bars
        return
    start, limit = plan.start, plan.page_rows(s.base)
    while True:
        rest = plan.read(s, start, plan.end)

        async def page_of(db: asyncpg.Pool, read: BarRead = rest) -> BarPage:
            return await read_bars(db, read, limit)

        page = await resources.reads.run(page_of, as_of=plan.as_of)
        if len(page.bars):
            yield page.bars
        if not page.more:
            return
        start = calendar.to_datetime(int(page.bars.ts[-1]) + 1_000)  # just after the last bar


async def _read_ahead(pages: AsyncIterator[T]) -> AsyncIterator[T]:
    """`pages`, with the next one already being read while the caller encodes this one.

    Postgres scans and packs the next page in its own process while this one is encoded here.
    """
    nxt = asyncio.ensure_future(anext(pages, None))
    try:
        while (item := await nxt) is not None:
            nxt = asyncio.ensure_future(anext(pages, None))
            yield item
    finally:
        if not nxt.done():
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await nxt


async def _all_pages(resources: AppResources, plan: ExportPlan) -> AsyncIterator[tuple[int, Bars | None]]:
    """(symbol index, page) of every symbol in turn; (i, None) ends symbol i."""
    for i, s in enumerate(plan.symbols):
        async for bars in _pages(resources, plan, s):
            yield i, bars
        yield i, None


def _entry(name: str, fmt: OutputFormat | None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = _COMPRESSION[fmt] if fmt is not None else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


async def export_zip(resources: AppResources, plan: ExportPlan) -> AsyncIterator[bytes]:
    """The export as zip bytes, streamed: each symbol's file as it is read, then the manifest."""
    out = parquet_export.ChunkSink()
    files: list[ExportedFile] = []
    pages = _read_ahead(_all_pages(resources, plan))
    with zipfile.ZipFile(out, mode="w") as archive:
        for s in plan.symbols:
            path = f"bars/{s.symbol}.{plan.format.value}"
            digest, size, rows = hashlib.sha256(), 0, 0
            encoder = BarFileEncoder(plan.format, with_symbol=True)
            with archive.open(_entry(path, plan.format), mode="w") as member:
                while (bars := (await anext(pages))[1]) is not None:
                    data = encoder.part(bars, s.symbol)
                    rows += len(bars)
                    digest.update(data)
                    size += len(data)
                    member.write(data)
                    if chunk := out.take():
                        yield chunk
                data = encoder.close()
                digest.update(data)
                size += len(data)
                member.write(data)
            files.append(
                ExportedFile(
                    symbol=s.symbol,
                    exchange_mic=s.exchange_mic,
                    path=path,
                    built_from=s.base.value if s.base.value != plan.timeframe.value else None,
                    rows=rows,
                    bytes=size,
                    sha256=digest.hexdigest(),
                    adjustment=adjustment_out(s.adjustment),
                )
            )
            if chunk := out.take():
                yield chunk
        archive.writestr(_entry(MANIFEST_NAME, None), manifest_json(plan, files))
    yield out.take()


def manifest_json(plan: ExportPlan, files: list[ExportedFile]) -> bytes:
    request = reproducing_request(plan)
    manifest = ExportManifest(
        format_version=FORMAT_VERSION,
        as_of=plan.as_of,
        policy_version=plan.policy_version,
        interval=plan.timeframe.value,
        align=plan.align.value,
        adjustment=plan.adjustment.value,
        start=plan.start,
        end=plan.end,
        format=plan.format.value,
        writer=parquet_export.PARQUET_WRITER if plan.format is OutputFormat.PARQUET else "csv",
        symbols=[s.symbol for s in plan.symbols],
        rows=sum(f.rows for f in files),
        files=files,
        request=request,
        url="/exports/bars?" + urlencode(request),
    )
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
