"""exports: a Parquet export of 1M bars over HTTP, rows/s, vs Postgres COPY ... TO STDOUT (FORMAT csv).

Data: `--exports-symbols` (40) XNAS symbols with every 1m bar of the completed sessions of the
last 93 days (the widest 1m range one export covers), about 1M bars, loaded once by COPY into
a database of this run; both sides then read the same rows from the same warm table.

- export: `GET /exports/bars?symbols=<all>&start=&end=&as_of=<fixed>&format=parquet` against
  the API as `./dev up` runs it (one uvicorn process), the zip streamed into this process and
  discarded: planning, the point-in-time read of each symbol's pages, Parquet encoding,
  sha256, zip framing and the manifest, end to end.
- baseline: `COPY (SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count,
  provider, as_of FROM bars WHERE symbol = ANY(...) AND interval = '1m' AND ts >= .. AND ts < ..
  ORDER BY symbol, ts) TO STDOUT (FORMAT csv)` through asyncpg into a discarding sink: the
  database's own fastest bulk-out path, with no version selection, no typing, no checksums.

Alternated per iteration (export, COPY), `--exports-iterations` per round for `--rounds`
rounds. The figure is rows/s at the median time of each; the ratio is export over COPY, the
target at least 0.5. The run fails if the export's manifest does not count every seeded bar.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from market_data import calendar, db
from market_data.records import Interval
from tests.benchmarks.harness import (
    BARS_COLUMNS,
    PID,
    Proc,
    Row,
    api_env,
    bench_db,
    free_port,
    log,
    median,
    redis_cleanup,
    temp_dir,
    uvicorn_args,
    wait_http,
)

NAME = "exports"
MIC = "XNAS"
SPAN = timedelta(days=93)
TARGET_RATIO = 0.5
COPY_SELECT = """
SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count, provider, as_of FROM bars
WHERE symbol = ANY('{symbols}'::text[]) AND interval = '1m' AND ts >= '{start}' AND ts < '{end}'
ORDER BY symbol, ts"""
"""asyncpg sends it as `COPY (<this>) TO STDOUT (FORMAT csv)`."""


def symbols_of(n: int) -> list[str]:
    return [f"BEX{i:03d}" for i in range(n)]


async def seed(dsn: str, symbols: list[str], now: datetime) -> tuple[datetime, datetime, datetime, int]:
    """93 days of 1m bars of each symbol; returns (start, end, as_of, bars)."""
    end = calendar.last_completed_session_open(MIC, now).replace(hour=0, minute=0) + timedelta(days=1)
    start = end - SPAN
    starts = calendar.expected_bar_starts_ns(MIC, Interval.M1, calendar.to_ns(start), calendar.to_ns(end))
    times = [calendar.to_datetime(t) for t in starts]
    as_of = now - timedelta(hours=1)
    rng = np.random.default_rng(16)
    conn = await db.connect(dsn)
    try:
        for symbol in symbols:
            close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0008, starts.size))), 4)
            volume = rng.integers(100, 50_000, starts.size)
            rows = [
                (
                    symbol,
                    "1m",
                    t,
                    as_of,
                    "synthetic",
                    "final",
                    c,
                    c * 1.0005,
                    c * 0.9995,
                    c,
                    v,
                    c,
                    v // 40 + 1,
                    1,
                )
                for t, c, v in zip(times, close.tolist(), volume.tolist(), strict=True)
            ]
            await conn.execute(
                "INSERT INTO symbol_universe (symbol, exchange_mic, tier) VALUES ($1, $2, 'T0')", symbol, MIC
            )
            await conn.copy_records_to_table("bars", records=rows, columns=BARS_COLUMNS)
        await conn.execute("VACUUM ANALYZE bars")
    finally:
        await conn.close()
    return start, end, as_of + timedelta(minutes=1), len(times) * len(symbols)


def export(client: httpx.Client, params: dict[str, str]) -> tuple[float, bytes]:
    """Seconds to stream the export, and its manifest."""
    t = time.perf_counter()
    tail = b""
    size = 0
    with client.stream("GET", "/exports/bars", params=params) as r:
        r.raise_for_status()
        buf = io.BytesIO()
        for chunk in r.iter_bytes():
            size += len(chunk)
            buf.write(chunk)
        tail = buf.getvalue()
    seconds = time.perf_counter() - t
    with zipfile.ZipFile(io.BytesIO(tail)) as z:
        return seconds, z.read("manifest.json")


async def copy_csv(dsn: str, sql: str) -> tuple[float, int]:
    """Seconds of COPY ... TO STDOUT into a discarding sink, and the bytes it sent."""
    size = 0

    async def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)

    conn = await db.connect(dsn)
    try:
        t = time.perf_counter()
        await conn.copy_from_query(sql, output=sink, format="csv")
        return time.perf_counter() - t, size
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> list[Row]:
    prefix = f"md:bench:{NAME}:{PID}:"
    symbols = symbols_of(args.exports_symbols)
    export_s: list[float] = []
    copy_s: list[float] = []
    details: dict[str, Any] = {}
    async with bench_db(NAME) as d:
        start, end, as_of, count = await seed(d.dsn, symbols, datetime.now(UTC))
        log(f"{NAME}: {count:,} 1m bars of {len(symbols)} symbols in [{start.date()}, {end.date()})")
        params = {
            "symbols": ",".join(symbols),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "as_of": as_of.isoformat(),
            "format": "parquet",
        }
        sql = COPY_SELECT.format(
            symbols="{" + ",".join(symbols) + "}", start=start.isoformat(), end=end.isoformat()
        )
        with temp_dir("md-bench-exports-") as logs:
            port = free_port()
            proc = Proc("api", uvicorn_args("api.app:create_app", port), api_env(d.dsn, prefix), logs)
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_http(base_url + "/health", 90, [proc])
                with httpx.Client(base_url=base_url, timeout=600) as client:
                    _, raw = export(client, params)  # warm-up, and the check
                    manifest = json.loads(raw)
                    if manifest["rows"] != count:
                        raise AssertionError(f"the export holds {manifest['rows']} bars, not {count}")
                    _, copied = await copy_csv(d.dsn, sql)
                    for rnd in range(args.rounds):
                        for _ in range(args.exports_iterations):
                            export_s.append(export(client, params)[0])
                            copy_s.append((await copy_csv(d.dsn, sql))[0])
                        log(
                            f"{NAME} round {rnd + 1}: export {count / median(export_s):,.0f} rows/s, "
                            f"COPY {count / median(copy_s):,.0f} rows/s"
                        )
                details = {
                    "bars": count,
                    "symbols": len(symbols),
                    "range": [start.isoformat(), end.isoformat()],
                    "samples_per_figure": len(export_s),
                    "export_s": {"p50": round(median(export_s), 3), "max": round(max(export_s), 3)},
                    "copy_s": {"p50": round(median(copy_s), 3), "max": round(max(copy_s), 3)},
                    "export_parquet_bytes": sum(f["bytes"] for f in manifest["files"]),
                    "copy_csv_bytes": copied,
                }
            finally:
                proc.stop()
    await redis_cleanup(prefix)
    ours, theirs = count / median(export_s), count / median(copy_s)
    ratio = ours / theirs
    return [
        Row(
            benchmark=f"exports: {count / 1e6:.2f}M 1m bars of {len(symbols)} symbols as Parquet",
            figure=f"{ours:,.0f} rows/s ({median(export_s):.2f} s)",
            baseline=f"COPY TO STDOUT csv: {theirs:,.0f} rows/s ({median(copy_s):.2f} s)",
            ratio=round(ratio, 2),
            target=f">= {TARGET_RATIO}x COPY",
            met=ratio >= TARGET_RATIO,
            details=details,
        )
    ]
