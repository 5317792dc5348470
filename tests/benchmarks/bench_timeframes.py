"""timeframes: a year of 1m bars read as 1h and as 1d over HTTP vs fetching the 1m bars and resampling.

Data: one T0 symbol on XNAS with every 1m bar of the completed sessions of the last 365 days
(about 98k bars), loaded by COPY into a database of this run. The API runs as `./dev up` runs
it (uvicorn, one process, `--factory api.app:create_app`); the client is httpx in this process,
one request at a time, so the figures are latencies, not throughput.

- built: `GET /stocks/SYM/history?interval=1h` (or `1d`) over the year, one page
  (`limit=10000`): the service fetches the base bars known at `as_of`, builds the bars and
  marks each complete or not; the client turns the JSON into a DataFrame.
- baseline: the same year of 1m bars through the same API as CSV (its fastest format for many
  rows: `limit` up to 200,000, in windows of at most 93 days, the 1m span limit), read by
  `pandas.read_csv` and resampled in the client to session-aligned hours (`offset='30min'`:
  New York opens at :30 UTC in both seasons) or UTC days, with the same OHLCV and vwap rules.

Both are timed end to end, from the first request to the DataFrame, alternated per iteration
(built 1h, baseline 1h, built 1d, baseline 1d), `--timeframes-iterations` per round for
`--rounds` rounds. The ratio is the baseline's p50 over the built read's p50 (how many times
faster building on read is); the target is at least 3. Each figure also has its p99. The run
fails if the built bars and the client's resample differ (OHLCV exactly, vwap to 1e-9), or if
a built bar of the year is incomplete.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd

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

NAME = "timeframes"
SYMBOL = "BTF1"
MIC = "XNAS"
TARGET_SPEEDUP = 3.0
CSV_WINDOW = timedelta(days=93)
"""The widest range of 1m bars one request may cover."""
AGG = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "pv": "sum",
    "trade_count": "sum",
}


async def seed(dsn: str, now: datetime) -> tuple[datetime, datetime, int]:
    """A year of 1m bars of SYMBOL; returns [start, end) of the year and the number of bars."""
    end = calendar.last_completed_session_open(MIC, now).replace(hour=0, minute=0) + timedelta(days=1)
    start = end - timedelta(days=365)
    starts = calendar.expected_bar_starts_ns(MIC, Interval.M1, calendar.to_ns(start), calendar.to_ns(end))
    rng = np.random.default_rng(16)
    close = np.round(150 * np.exp(np.cumsum(rng.normal(0, 0.0008, starts.size))), 4)
    open_ = np.round(close * (1 + rng.normal(0, 0.0003, starts.size)), 4)
    high = np.round(np.maximum(open_, close) * 1.0005, 4)
    low = np.round(np.minimum(open_, close) * 0.9995, 4)
    volume = rng.integers(100, 50_000, starts.size)
    as_of = now - timedelta(hours=1)
    times = [calendar.to_datetime(t) for t in starts]
    rows = [
        (
            SYMBOL,
            "1m",
            t,
            as_of,
            "synthetic",
            "final",
            o,
            h,
            lo,
            c,
            v,
            round((h + lo + c) / 3, 4),
            v // 40 + 1,
            1,
        )
        for t, o, h, lo, c, v in zip(
            times, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), volume.tolist(), strict=True
        )
    ]
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO symbol_universe (symbol, exchange_mic, tier) VALUES ($1, $2, 'T0')", SYMBOL, MIC
        )
        await conn.copy_records_to_table("bars", records=rows, columns=BARS_COLUMNS)
        await conn.execute("VACUUM ANALYZE bars")
    finally:
        await conn.close()
    return start, end, len(rows)


def built(client: httpx.Client, interval: str, start: datetime, end: datetime) -> pd.DataFrame:
    r = client.get(
        f"/stocks/{SYMBOL}/history",
        params={"interval": interval, "start": start.isoformat(), "end": end.isoformat(), "limit": 10_000},
    )
    r.raise_for_status()
    body = r.json()
    if body["next_page_token"] is not None:
        raise AssertionError("the year did not fit one page")
    df = pd.DataFrame(body["bars"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.set_index("ts")


def resampled(client: httpx.Client, interval: str, start: datetime, end: datetime) -> pd.DataFrame:
    frames = []
    lo = start
    while lo < end:
        hi = min(lo + CSV_WINDOW, end)
        r = client.get(
            f"/stocks/{SYMBOL}/history",
            params={"start": lo.isoformat(), "end": hi.isoformat(), "limit": 200_000, "format": "csv"},
        )
        r.raise_for_status()
        frames.append(pd.read_csv(io.BytesIO(r.content), parse_dates=["ts"], index_col="ts"))
        lo = hi
    minutes = pd.concat(frames)
    minutes["pv"] = minutes["vwap"] * minutes["volume"]
    rule = {"1h": {"rule": "1h", "offset": "30min"}, "1d": {"rule": "1D"}}[interval]
    out = minutes.resample(**rule).agg(AGG).dropna(subset=["open"])  # type: ignore[call-overload]
    out["vwap"] = out["pv"] / out["volume"]
    return out.drop(columns="pv")


def check_same(ours: pd.DataFrame, theirs: pd.DataFrame, interval: str) -> None:
    if not ours["complete"].all():
        raise AssertionError(f"{interval}: a built bar of the year is incomplete")
    if list(ours.index) != list(theirs.index):
        raise AssertionError(f"{interval}: built bars start at other times than the client's resample")
    for column in ("open", "high", "low", "close", "volume", "trade_count"):
        if not np.array_equal(ours[column].to_numpy(float), theirs[column].to_numpy(float)):
            raise AssertionError(f"{interval}: {column} differs from the client's resample")
    if not np.allclose(ours["vwap"].to_numpy(float), theirs["vwap"].to_numpy(float), rtol=1e-9):
        raise AssertionError(f"{interval}: vwap differs from the client's resample")


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[float, pd.DataFrame]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    prefix = f"md:bench:{NAME}:{PID}:"
    async with bench_db(NAME) as d:
        start, end, count = await seed(d.dsn, datetime.now(UTC))
        log(f"{NAME}: {count:,} 1m bars of {SYMBOL} in [{start.date()}, {end.date()})")
        with temp_dir("md-bench-timeframes-") as logs:
            port = free_port()
            proc = Proc("api", uvicorn_args("api.app:create_app", port), api_env(d.dsn, prefix), logs)
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_http(base_url + "/health", 90, [proc])
                samples: dict[tuple[str, str], list[float]] = {}
                with httpx.Client(base_url=base_url, timeout=120) as client:
                    for interval in ("1h", "1d"):  # warm-up, and the check that both give the same bars
                        check_same(
                            built(client, interval, start, end),
                            resampled(client, interval, start, end),
                            interval,
                        )
                    for rnd in range(args.rounds):
                        for _ in range(args.timeframes_iterations):
                            for interval in ("1h", "1d"):
                                for how, fn in (("built", built), ("baseline", resampled)):
                                    ms, _ = timed(
                                        lambda fn=fn, interval=interval: fn(client, interval, start, end)
                                    )
                                    samples.setdefault((interval, how), []).append(ms)
                        log(
                            f"{NAME} round {rnd + 1}: "
                            + ", ".join(
                                f"{iv} {how} p50 {median(v):.0f} ms" for (iv, how), v in samples.items()
                            )
                        )
            finally:
                proc.stop()
    await redis_cleanup(prefix)
    for interval in ("1h", "1d"):
        ours, theirs = samples[(interval, "built")], samples[(interval, "baseline")]
        speedup = median(theirs) / median(ours)
        details: dict[str, Any] = {
            "bars_1m": count,
            "range": [start.isoformat(), end.isoformat()],
            "samples_per_figure": len(ours),
            "built_ms": {"p50": round(median(ours), 1), "p99": round(p99(ours), 1)},
            "baseline_ms": {"p50": round(median(theirs), 1), "p99": round(p99(theirs), 1)},
            "baseline_requests": -(-(end - start).days // CSV_WINDOW.days),
        }
        rows.append(
            Row(
                benchmark=f"timeframes: a year of 1m ({count / 1000:.0f}k) read as {interval}",
                figure=f"p50 {median(ours):.0f} ms, p99 {p99(ours):.0f} ms",
                baseline=f"1m CSV + pandas resample: p50 {median(theirs):.0f} ms, p99 {p99(theirs):.0f} ms",
                ratio=round(speedup, 2),
                target=f">= {TARGET_SPEEDUP:.0f}x faster",
                met=speedup >= TARGET_SPEEDUP,
                details=details,
            )
        )
    return rows
