"""gaps: expected-vs-received over 10,000 symbols x 1 session of 1m bars (3.9M slots), 1% dropped.

The store holds one NYSE session (390 minutes) of 1m bars for 10,000 symbols with 1% of the
bars dropped at random (seeded). `find_gaps` (market_data.gaps: the stored bars from
Postgres, the calendar's expected bars, minus confirmed-empty ranges, contiguous missing runs)
is run over every symbol's whole session, 250 symbols per call as a T0 sweep batch calls it.
Every run must find exactly the dropped bars, as ranges, or the benchmark fails.

Baseline, in the same run: Postgres counting the same rows per symbol (`SELECT symbol,
count(*) ... GROUP BY symbol`, the same 250-symbol batches): the scan that any reader of these
rows pays, with nothing sent back. The target is absolute: the whole 3.9M slots in under 2 s.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from market_data import calendar
from market_data.gaps import GapRange, Window, find_gaps
from market_data.records import Interval
from tests.benchmarks.harness import BARS_COLUMNS, Row, bench_db, log, median, si

NAME = "gaps"
TARGET_SECONDS = 2.0
DROP = 0.01
BATCH = 250
SESSION_OPEN = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
"""Monday 2 November 2026, the first session after the US DST switch: 14:30-21:00 UTC."""


def expected_runs(dropped: np.ndarray, starts_ns: np.ndarray) -> set[tuple[str, datetime, datetime, int]]:
    """Contiguous runs of dropped minutes per symbol, computed apart from the code under test."""
    out: set[tuple[str, datetime, datetime, int]] = set()
    step = 60 * 1_000_000_000
    for i in range(dropped.shape[0]):
        idx = np.flatnonzero(dropped[i])
        if idx.size == 0:
            continue
        run_start = prev = int(idx[0])
        for j in [*idx[1:].tolist(), None]:
            if j is not None and j == prev + 1:
                prev = j
                continue
            out.add(
                (
                    f"GEN{i + 1:05d}",
                    calendar.to_datetime(starts_ns[run_start]),
                    calendar.to_datetime(starts_ns[prev] + step),
                    prev - run_start + 1,
                )
            )
            if j is not None:
                run_start = prev = j
    return out


async def run(args: argparse.Namespace) -> list[Row]:
    symbols = args.gaps_symbols
    starts_ns = calendar.expected_bar_starts_ns(
        "XNYS",
        Interval.M1,
        calendar.to_ns(SESSION_OPEN),
        calendar.to_ns(SESSION_OPEN + timedelta(days=1)),
    )
    minutes = starts_ns.size
    assert minutes == 390, minutes
    slots = symbols * minutes
    rng = np.random.default_rng(11)
    dropped = rng.random((symbols, minutes)) < DROP
    names = [f"GEN{i + 1:05d}" for i in range(symbols)]
    want = expected_runs(dropped, starts_ns)
    stamps = [calendar.to_datetime(t) for t in starts_ns]
    as_of = datetime.now(UTC)

    async with bench_db(NAME) as d:
        conn = await d.connect()
        try:
            log(f"gaps: loading {slots - int(dropped.sum()):,} bars ({int(dropped.sum()):,} dropped)")
            await conn.executemany(
                "INSERT INTO symbol_universe (symbol, exchange_mic, tier) VALUES ($1, 'XNYS', 'T0')",
                [(s,) for s in names],
            )
            records = (
                (s, "1m", stamps[m], as_of, "synthetic", "final", 10.0, 10.0, 10.0, 10.0, 100)
                for i, s in enumerate(names)
                for m in range(minutes)
                if not dropped[i, m]
            )
            await conn.copy_records_to_table(
                "bars",
                records=records,
                columns=BARS_COLUMNS[:11],  # up to volume: vwap and the rest stay NULL
            )
            await conn.execute("VACUUM ANALYZE bars")
            windows = [
                Window(
                    symbol=s,
                    exchange_mic="XNYS",
                    interval=Interval.M1,
                    after=stamps[0] - timedelta(microseconds=1),
                    until=stamps[-1],
                )
                for s in names
            ]
            batches = [windows[i : i + BATCH] for i in range(0, len(windows), BATCH)]
            read_sql = """SELECT symbol, count(*) AS n FROM bars
                          WHERE symbol = ANY($1::text[]) AND interval = '1m' AND ts > $2 AND ts <= $3
                          GROUP BY symbol"""
            gap_s: list[float] = []
            read_s: list[float] = []
            found: list[GapRange] = []
            for rnd in range(args.rounds + 1):  # round 0 warms the cache and the calendar
                t = time.perf_counter()
                rows = 0
                for b in batches:
                    counted = await conn.fetch(read_sql, [w.symbol for w in b], b[0].after, b[0].until)
                    rows += sum(r["n"] for r in counted)
                read = time.perf_counter() - t
                t = time.perf_counter()
                found = []
                for b in batches:
                    found.extend(await find_gaps(conn, b))
                gap = time.perf_counter() - t
                got = {(g.symbol, g.start, g.end, g.bars) for g in found}
                if got != want:
                    raise AssertionError(
                        f"find_gaps found {len(got)} ranges, {len(want)} were dropped; "
                        f"{len(got - want)} extra, {len(want - got)} missed"
                    )
                if rows != slots - int(dropped.sum()):
                    raise AssertionError(f"read {rows} rows")
                log(
                    f"gaps round {rnd}: find_gaps {gap:.2f} s ({slots / gap:,.0f} slots/s), scan {read:.2f} s"
                )
                if rnd > 0:
                    gap_s.append(gap)
                    read_s.append(read)
        finally:
            await conn.close()
    g, r = median(gap_s), median(read_s)
    return [
        Row(
            benchmark=f"gaps: {symbols:,} symbols x 1 session",
            figure=f"{g:.2f} s ({si(slots / g)} slots/s)",
            baseline=f"Postgres scan {r:.2f} s",
            ratio=r / g,
            target=f"< {TARGET_SECONDS:.0f} s",
            met=g < TARGET_SECONDS,
            details={
                "slots": slots,
                "dropped_bars": int(dropped.sum()),
                "ranges_found": len(found),
                "batch_symbols": BATCH,
                "find_gaps_seconds": [round(x, 3) for x in gap_s],
                "scan_seconds": [round(x, 3) for x in read_s],
            },
        )
    ]
