"""adjust: a year of 1m bars read split- and dividend-adjusted vs read raw, in the same run.

Data: the `timeframes` bench's year of 1m bars of one XNAS symbol (about 98k bars, by COPY),
its security, and the actions of a year like AAPL's 2020: a 4:1 split in the middle of the year
and four quarterly cash dividends, known before the read's `as_of`.

Both reads go through the read pipeline every bar endpoint uses (`bar_reads.read_bars`, a pool
as the API has, the whole year as one page of stored 1m bars): raw (`adjustment=raw`) and
`adjustment=all` (the actions known at `as_of`, the dividends' reference closes, the factors
applied to every bar). They are alternated, `--adjust-iterations` each per round for `--rounds`
rounds; the figure is the p50 of the adjusted read over the raw read's (target: at most 1.3).
The run fails unless the adjusted year equals the raw year with the factors applied by hand.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from market_data.adjustment import Adjustment
from market_data.bar_reads import BarPage, BarRead, read_bars
from market_data.corporate_actions import ActionKind, CorporateAction, effective_ns, record_actions
from market_data.records import Interval
from market_data.securities import ensure_securities
from market_data.timeframes import Align, parse_timeframe
from tests.benchmarks.bench_timeframes import MIC, SYMBOL, seed
from tests.benchmarks.harness import Row, bench_db, log, median

NAME = "adjust"
TARGET_RATIO = 1.3


def _actions(start: datetime, end: datetime) -> list[CorporateAction]:
    """A 4:1 split mid-year and a dividend each quarter (on weekdays inside the year)."""

    def weekday(d: date) -> date:
        return d + timedelta(days=(7 - d.weekday()) % 7) if d.weekday() >= 5 else d

    span = (end - start).days
    split = CorporateAction(
        symbol=SYMBOL,
        kind=ActionKind.SPLIT,
        ex_date=weekday((start + timedelta(days=span // 2)).date()),
        provider="synthetic",
        split_from=1,
        split_to=4,
    )
    dividends = [
        CorporateAction(
            symbol=SYMBOL,
            kind=ActionKind.CASH_DIVIDEND,
            ex_date=weekday((start + timedelta(days=span * q // 4 + 20)).date()),
            provider="synthetic",
            amount=0.2,
            currency="USD",
        )
        for q in range(4)
    ]
    return [split, *dividends]


def _read(sid: int, adjustment: Adjustment, start: datetime, end: datetime, as_of: datetime) -> BarRead:
    return BarRead(
        symbol=SYMBOL,
        exchange_mic=MIC,
        timeframe=parse_timeframe("1m"),
        align=Align.SESSION,
        base=Interval.M1,
        start=start,
        end=end,
        as_of=as_of,
        adjustment=adjustment,
        security_id=sid,
    )


def _check(raw: BarPage, adjusted: BarPage, count: int) -> None:
    if len(raw.bars) != count or len(adjusted.bars) != count or raw.more or adjusted.more:
        raise AssertionError(f"expected the whole year in one page: {len(raw.bars)}, {len(adjusted.bars)}")
    applied = adjusted.adjustment
    if applied is None or len(applied.actions) != 5:
        raise AssertionError(f"expected 5 actions applied, got {applied}")
    factor = np.ones(count)
    for a in applied.actions:
        factor[raw.bars.ts < effective_ns(a.ex_date)] *= a.price_factor
    if not np.allclose(adjusted.bars.close, raw.bars.close * factor, rtol=1e-12):
        raise AssertionError("adjusted closes are not the raw closes times the factors")


async def run(args: argparse.Namespace) -> list[Row]:
    samples: dict[str, list[float]] = {"raw": [], "all": []}
    async with bench_db(NAME) as d:
        now = datetime.now(UTC)
        start, end, count = await seed(d.dsn, now)
        pool = await asyncpg.create_pool(d.dsn, min_size=4, max_size=4)
        try:
            async with pool.acquire() as conn:
                await ensure_securities(conn, [(SYMBOL, MIC, None)])
                sid = await conn.fetchval(
                    "SELECT security_id FROM securities WHERE storage_symbol = $1", SYMBOL
                )
                await record_actions(conn, _actions(start, end), now - timedelta(minutes=30))
            log(f"{NAME}: {count:,} 1m bars of {SYMBOL} in [{start.date()}, {end.date()}), 5 actions")
            reads = {mode: _read(sid, Adjustment(mode), start, end, now) for mode in samples}
            _check(
                await read_bars(pool, reads["raw"], count + 1),
                await read_bars(pool, reads["all"], count + 1),
                count,
            )
            for rnd in range(args.rounds):
                for _ in range(args.adjust_iterations):
                    for mode, read in reads.items():
                        t = time.perf_counter()
                        await read_bars(pool, read, count + 1)
                        samples[mode].append((time.perf_counter() - t) * 1000)
                log(
                    f"{NAME} round {rnd + 1}: "
                    + ", ".join(f"{m} p50 {median(v):.0f} ms" for m, v in samples.items())
                )
        finally:
            await pool.close()
    raw, adjusted = median(samples["raw"]), median(samples["all"])
    ratio = adjusted / raw
    details: dict[str, Any] = {
        "bars_1m": count,
        "actions": 5,
        "samples_per_figure": len(samples["raw"]),
        "raw_ms": {"p50": round(raw, 1), "p99": round(float(np.percentile(samples["raw"], 99)), 1)},
        "adjusted_ms": {"p50": round(adjusted, 1), "p99": round(float(np.percentile(samples["all"], 99)), 1)},
    }
    return [
        Row(
            benchmark=f"adjust: a year of 1m ({count / 1000:.0f}k) read split+dividend adjusted",
            figure=f"p50 {adjusted:.0f} ms",
            baseline=f"the same read raw: p50 {raw:.0f} ms",
            ratio=round(ratio, 2),
            target=f"<= {TARGET_RATIO}x raw",
            met=ratio <= TARGET_RATIO,
            details=details,
        )
    ]
