"""ingest: the point-in-time write path vs a raw COPY of the same rows, side by side.

1,000,000 1m bars (10,000 symbols x 100 minutes) are written the way the T0 sweep writes them:
250 symbols per transaction (the default policy's batch_size), 25,000 bars each. Each batch
goes once through a raw asyncpg `copy_records_to_table` into a plain table with the same
columns and primary key (the floor: what Postgres itself takes) and once through
`write_bars` (stage COPY, locks, comparison with the current versions, INSERT, cursors,
notifications), alternately, so both see the same server and the same table sizes. Then
the same bars again: a full re-delivery, which must add no rows, against another raw COPY.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from market_data.ingest.pit_write import write_bars
from market_data.records import Bar, Interval
from tests.benchmarks.harness import BARS_COLUMNS, Row, bench_db, log, median, si

NAME = "ingest"
TARGET = 0.5
START = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)

RAW_TABLE = """
CREATE TABLE bars_raw (
    symbol text NOT NULL, interval text NOT NULL, ts timestamptz NOT NULL, as_of timestamptz NOT NULL,
    provider text NOT NULL, status text NOT NULL, open float8 NOT NULL, high float8 NOT NULL,
    low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL, vwap float8, trade_count integer,
    policy_version integer,
    PRIMARY KEY (symbol, interval, ts, as_of))"""
RAW_COLUMNS = BARS_COLUMNS


def make_batches(symbols: int, minutes: int, per_batch: int) -> list[list[Bar]]:
    """`symbols` x `minutes` 1m bars, grouped `per_batch` symbols to a batch (symbol, then time order)."""
    rng = np.random.default_rng(7)
    times = [START + timedelta(minutes=m) for m in range(minutes)]
    batches: list[list[Bar]] = []
    batch: list[Bar] = []
    for i in range(symbols):
        symbol = f"GEN{i + 1:05d}"
        base = 20 + 400 * rng.random()
        px = np.round(base * (1 + np.cumsum(rng.normal(0, 0.001, minutes))), 4).tolist()
        vol = rng.integers(100, 50_000, minutes).tolist()
        batch.extend(
            Bar(
                symbol=symbol,
                interval=Interval.M1,
                ts=t,
                open=p,
                high=round(p * 1.001, 4),
                low=round(p * 0.999, 4),
                close=round(p * 1.0003, 4),
                volume=float(v),
                vwap=p,
                trade_count=v // 50 + 1,
                provider="synthetic",
            )
            for t, p, v in zip(times, px, vol, strict=True)
        )
        if (i + 1) % per_batch == 0 or i + 1 == symbols:
            batches.append(batch)
            batch = []
    return batches


def raw_records(batch: Sequence[Bar], as_of: datetime) -> list[tuple[Any, ...]]:
    return [
        (
            b.symbol,
            b.interval.value,
            b.ts,
            as_of,
            b.provider,
            b.status,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap,
            b.trade_count,
            1,
        )
        for b in batch
    ]


WriteFn = Callable[..., Any]


async def measure(
    dsn: str, batches: list[list[Bar]], rounds: int, write: WriteFn = write_bars
) -> dict[str, list[float]]:
    """Seconds per phase and round: raw_new, pit_new, raw_again, pit_again."""
    from market_data import db

    as_of = datetime.now(UTC)
    raws = [raw_records(b, as_of) for b in batches]  # the raw path starts from ready tuples
    total = sum(len(b) for b in batches)
    out: dict[str, list[float]] = {"raw_new": [], "pit_new": [], "raw_again": [], "pit_again": []}
    conn = await db.connect(dsn)
    try:
        await conn.execute(RAW_TABLE)
        for rnd in range(rounds):
            for phase in ("new", "again"):
                if phase == "new":
                    await conn.execute("TRUNCATE bars, ingestion_cursors, bars_raw")
                else:
                    await conn.execute("TRUNCATE bars_raw")
                    await conn.execute("ANALYZE bars")  # as autovacuum would have by now
                await conn.execute("CHECKPOINT")  # both sides start with no dirty buffers
                raw_s = pit_s = 0.0
                inserted = 0
                for batch, records in zip(batches, raws, strict=True):

                    async def raw(records: list[tuple[Any, ...]] = records) -> None:
                        async with conn.transaction():
                            await conn.copy_records_to_table("bars_raw", records=records, columns=RAW_COLUMNS)

                    async def pit(batch: list[Bar] = batch) -> int:
                        r = await write(conn, batch, policy_version=1, advance_cursors=True)
                        return int(r.inserted)

                    # alternate which goes first, so neither always meets the other's dirty pages
                    if rnd % 2 == 0:
                        t = time.perf_counter()
                        await raw()
                        raw_s += time.perf_counter() - t
                        t = time.perf_counter()
                        inserted += await pit()
                        pit_s += time.perf_counter() - t
                    else:
                        t = time.perf_counter()
                        inserted += await pit()
                        pit_s += time.perf_counter() - t
                        t = time.perf_counter()
                        await raw()
                        raw_s += time.perf_counter() - t
                stored = await conn.fetchval("SELECT count(*) FROM bars")
                want = total if phase == "new" else 0
                if inserted != want or stored != total:
                    raise AssertionError(f"{phase}: inserted {inserted}, {stored} rows stored (want {want})")
                out[f"raw_{phase}"].append(raw_s)
                out[f"pit_{phase}"].append(pit_s)
                log(
                    f"ingest round {rnd + 1} {phase}: raw {total / raw_s:,.0f} rows/s, "
                    f"write_bars {total / pit_s:,.0f} rows/s ({raw_s / pit_s:.2f}x)"
                )
    finally:
        await conn.close()
    return out


def rows_from(times: dict[str, list[float]], total: int, shape: str) -> list[Row]:
    rows = []
    for phase, label in (("new", "new bars"), ("again", "re-delivery (adds 0 rows)")):
        raw, pit = times[f"raw_{phase}"], times[f"pit_{phase}"]
        ratios = [r / p for r, p in zip(raw, pit, strict=True)]
        ratio = median(ratios)
        rows.append(
            Row(
                benchmark=f"ingest: {label}",
                figure=f"{si(total / median(pit))} rows/s",
                baseline=f"raw COPY {si(total / median(raw))} rows/s",
                ratio=ratio,
                target=f">= {TARGET}x raw",
                met=ratio >= TARGET,
                details={
                    "rows": total,
                    "shape": shape,
                    "write_bars_seconds": [round(x, 2) for x in pit],
                    "raw_copy_seconds": [round(x, 2) for x in raw],
                    "ratio_per_round": [round(x, 3) for x in ratios],
                },
            )
        )
    return rows


async def run(args: argparse.Namespace) -> list[Row]:
    symbols, minutes, per_batch = args.ingest_symbols, args.ingest_minutes, 250
    log(f"ingest: generating {symbols * minutes:,} bars")
    batches = make_batches(symbols, minutes, per_batch)
    total = sum(len(b) for b in batches)
    shape = (
        f"{symbols:,} symbols x {minutes} 1m bars in {len(batches)} transactions of "
        f"{per_batch} symbols ({per_batch * minutes:,} bars), {args.rounds} rounds"
    )
    async with bench_db(NAME) as d:
        times = await measure(d.dsn, batches, args.rounds)
    return rows_from(times, total, shape)
