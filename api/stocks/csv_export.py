"""Bars as CSV, for pandas and spreadsheets (the /history file format `csv`, and exports).

`pd.read_csv(url, parse_dates=["ts", "as_of"])` gives one row per bar: ISO 8601 UTC
timestamps (`Z`), empty cells for a missing vwap or trade_count and for `base_bars` of a bar
read as stored, `complete` as true/false. An export puts a `symbol` column first.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

import numpy as np

from api.stocks.schemas import BAR_FIELDS, field_columns
from market_data.aggregate import Bars

CSV_MEDIA_TYPE = "text/csv"
"""Served as `text/csv; charset=utf-8` (Litestar adds the charset of text types)."""
CHUNK_ROWS = 5_000
"""Bars per chunk of a streamed file (a CSV chunk, a Parquet row group)."""
CSV_COLUMNS = BAR_FIELDS


def _iso(ns: np.ndarray, unit: Literal["s", "us"]) -> list[str]:
    as_datetimes: np.ndarray[Any, np.dtype[np.datetime64]] = ns.astype("datetime64[ns]")
    return np.datetime_as_string(as_datetimes, unit=unit, timezone="UTC").tolist()


def csv_header(*, with_symbol: bool = False) -> str:
    return ",".join(("symbol", *CSV_COLUMNS) if with_symbol else CSV_COLUMNS) + "\n"


def csv_lines(bars: Bars, *, symbol: str | None = None) -> str:
    """CSV lines of `bars` (no header), in their order; `symbol` first on each line if given."""
    whole_seconds = not (bars.ts % 1_000_000_000).any()
    columns = field_columns(bars, _iso(bars.ts, "s" if whole_seconds else "us"), _iso(bars.as_of, "us"))
    complete = BAR_FIELDS.index("complete")
    columns[complete] = ["true" if c else "false" for c in columns[complete]]
    if symbol is not None:
        columns.insert(0, [symbol] * len(bars))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(zip(*columns, strict=True))
    return buf.getvalue()
