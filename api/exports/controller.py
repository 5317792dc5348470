"""/exports/bars: many symbols' bars over a range, pinned at one `as_of`, as one streamed zip."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import Parameter

from api.exports.bars import ZIP_MEDIA_TYPE, export_filename, export_zip
from api.exports.plan import MAX_EXPORT_ROWS, plan_export
from api.schemas import ErrorBody, documented
from api.state import Resources
from api.stocks.files import FileStream
from api.stocks.params import (
    ERRORS,
    AdjustmentQuery,
    AlignQuery,
    EndQuery,
    IntervalQuery,
    OutputFormat,
    StartQuery,
    SymbolsQuery,
    choosing_date,
)
from api.stocks.symbols import require_listed_many
from market_data.adjustment import Adjustment
from market_data.timeframes import Align

ExportAsOfQuery = Annotated[
    datetime | None,
    Parameter(
        description=(
            "Point-in-time: every bar as known at this instant (ISO 8601). Default: now, resolved once "
            "(just before the oldest write still in flight) and echoed in the manifest and `X-As-Of`; "
            "a later instant is a 400"
        )
    ),
]


class ExportFormat(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


ExportFormatQuery = Annotated[
    ExportFormat,
    Parameter(description="`parquet` (typed columns, default) or `csv`, one file per symbol"),
]


@dataclass
class ExportOperation(Operation):
    """OpenAPI operation of /exports/bars: its 200 is a zip."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {
                ZIP_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        format=OpenAPIFormat.BINARY,
                        description=(
                            "bars/<SYMBOL>.parquet (or .csv) per symbol, in the order asked, then "
                            "manifest.json (as_of, policy version, interval, symbols, rows and sha256 "
                            "per file, the request that reproduces it)"
                        ),
                    )
                )
            }


class ExportsController(Controller):
    path = "/exports"
    tags = ["exports"]

    @get(
        "/bars",
        operation_id="exportBars",
        summary="Bulk export of many symbols' bars, reproducible (zip of files + manifest)",
        description=(
            "The bars of every symbol in [start, end) as known at one `as_of`, streamed as a zip: one "
            "file per symbol (`bars/AAPL.parquet`, or `.csv`; columns `symbol` then those of /history), "
            "oldest first, then `manifest.json` with the `as_of`, the policy version active then, the "
            "interval, the symbols, each file's rows, bytes and sha256, and the `request` (and `url`) "
            "that gives exactly the same files again, whatever arrives later. Any timeframe, each "
            "symbol read or built from the stored intervals it held at `as_of`. At most the interval's "
            f"maximum span (as on /history) and {MAX_EXPORT_ROWS} expected bars in all; a refused "
            "export is a 400 naming the parameter before anything is streamed."
        ),
        responses={
            **ERRORS,
            200: documented(str, description="A zip: a file per symbol, then manifest.json"),
            404: documented(ErrorBody, description="Symbols not in the universe; the detail lists every one"),
        },
        operation_class=ExportOperation,
    )
    async def export_bars(
        self,
        resources: Resources,
        symbols: SymbolsQuery,
        start: StartQuery = None,
        end: EndQuery = None,
        interval: IntervalQuery = "1m",
        align: AlignQuery = Align.SESSION,
        as_of: ExportAsOfQuery = None,
        format: ExportFormatQuery = ExportFormat.PARQUET,  # the public name of the query parameter
        adjustment: AdjustmentQuery = Adjustment.RAW,
    ) -> FileStream:
        plan = await plan_export(
            resources,
            await require_listed_many(resources, symbols, on=choosing_date(start, end)),
            interval=interval,
            align=align,
            start=start,
            end=end,
            as_of=as_of,
            fmt=OutputFormat(format.value),
            adjustment=adjustment,
        )
        headers = {
            "Content-Disposition": f'attachment; filename="{export_filename(plan)}"',
            "X-As-Of": plan.as_of.isoformat().replace("+00:00", "Z"),
        }
        return FileStream(export_zip(resources, plan), media_type=ZIP_MEDIA_TYPE, headers=headers)
