"""Bars as Apache Parquet: typed columns, written as a stream of row groups.

The columns are BAR_FIELDS (an export adds `symbol` in front), each with its type, so
`pd.read_parquet` needs no parsing hints:

| column | Arrow type | null when |
|---|---|---|
| ts, as_of | timestamp[us, tz=UTC] | never |
| open, high, low, close, volume | float64 (volume: fractional since migration 008) | never |
| vwap | float64 | unknown |
| trade_count | int64 | unknown |
| provider | string | never |
| complete | bool | never |
| base_bars | int64 | the bar is read as stored |

`ParquetStream` writes one file as row groups, handing back each group's bytes as soon as
it is written: a page of /history, or one symbol of an export, never has to be held whole as
Parquet. The same bars give the same bytes (same pyarrow version, same row groups).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from api.stocks.schemas import BAR_FIELDS
from market_data.aggregate import READ_AS_STORED, Bars

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
"""IANA-registered media type of Parquet files."""
PARQUET_WRITER = f"pyarrow {pa.__version__}"

_UTC_US = pa.timestamp("us", tz="UTC")
_TYPES: dict[str, pa.DataType] = {
    "symbol": pa.string(),
    "ts": _UTC_US,
    "open": pa.float64(),
    "high": pa.float64(),
    "low": pa.float64(),
    "close": pa.float64(),
    "volume": pa.float64(),
    "vwap": pa.float64(),
    "trade_count": pa.int64(),
    "provider": pa.string(),
    "as_of": _UTC_US,
    "complete": pa.bool_(),
    "base_bars": pa.int64(),
}
_NULLABLE = {"vwap", "trade_count", "base_bars"}


def bar_schema(*, with_symbol: bool = False) -> pa.Schema:
    """The Arrow schema of bars (BAR_FIELDS; `symbol` first when `with_symbol`)."""
    names = ("symbol", *BAR_FIELDS) if with_symbol else BAR_FIELDS
    return pa.schema([pa.field(n, _TYPES[n], nullable=n in _NULLABLE) for n in names])


def _optional_ints(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(np.where(missing, 0, values).astype(np.int64), type=pa.int64(), mask=missing)


def bar_table(bars: Bars, *, symbol: str | None = None) -> pa.Table:
    """`bars` (in their order) as an Arrow table of `bar_schema`, with a `symbol` column if given."""
    columns: dict[str, pa.Array] = {
        "ts": pa.array(bars.ts // 1000, type=_UTC_US),
        "open": pa.array(bars.open, type=pa.float64()),
        "high": pa.array(bars.high, type=pa.float64()),
        "low": pa.array(bars.low, type=pa.float64()),
        "close": pa.array(bars.close, type=pa.float64()),
        "volume": pa.array(bars.volume, type=pa.float64()),
        "vwap": pa.array(bars.vwap, type=pa.float64(), from_pandas=True),  # NaN -> null
        "trade_count": _optional_ints(bars.trade_count, np.isnan(bars.trade_count)),
        "provider": pa.array(bars.provider, type=pa.string()),
        "as_of": pa.array(bars.as_of // 1000, type=_UTC_US),
        "complete": pa.array(bars.complete, type=pa.bool_()),
        "base_bars": _optional_ints(bars.base_bars, bars.base_bars == READ_AS_STORED),
    }
    if symbol is not None:
        columns["symbol"] = pa.repeat(pa.scalar(symbol, pa.string()), len(bars))
    schema = bar_schema(with_symbol=symbol is not None)
    return pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)


class ChunkSink:
    """A write-only file that keeps what is written until `take` hands it over."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class ParquetStream:
    """One Parquet file written as row groups: `write` returns the bytes each adds, `close` the footer."""

    def __init__(self, *, with_symbol: bool = False) -> None:
        self._with_symbol = with_symbol
        self._out = ChunkSink()
        # dictionaries only where values repeat (a few providers, one symbol): on every column
        # they cost more than the whole rest of the encoding and save nothing on prices
        self._writer = pq.ParquetWriter(
            self._out, bar_schema(with_symbol=with_symbol), use_dictionary=["symbol", "provider"]
        )

    def write(self, bars: Bars, symbol: str | None = None) -> bytes:
        """Append `bars` (of `symbol`, if the file has that column) as one row group (none when
        empty); the bytes written so far."""
        if len(bars):
            self._writer.write_table(bar_table(bars, symbol=symbol if self._with_symbol else None))
        return self._out.take()

    def close(self) -> bytes:
        """Finish the file: the remaining bytes (the footer)."""
        self._writer.close()
        return self._out.take()
