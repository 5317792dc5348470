"""sweep-celery: the steady 10,000-symbol md_sweep_t0 run on 2 Celery workers vs LocalExecutor.

The same workload as `sweep` (`tests.benchmarks.bench_sweep`: the default policy with only the
synthetic provider, `--sweep-symbols` generated XNYS symbols in 40 batches of 250, runs
triggered with data intervals inside a past full session) on two Airflow stacks that run side
by side, each on databases of its own: one with LocalExecutor, one with CeleryExecutor and two
`airflow celery worker` processes on this machine (Redis as broker, each worker with half of the
parallelism of 16, as `./dev up --celery-workers 2` runs them). Both get their cold first run
(a session per symbol: not compared), then their steady runs (one new minute per symbol)
alternate, Local and Celery, the order swapped every round, so both meet the same machine
load; the idle stack costs the other the same little CPU (scheduler loop, idle workers).

The figure is the median steady wall time (Airflow's DAG run end_date - start_date) of each;
the target is Celery's at most 1.2x LocalExecutor's. The JSON has each run's breakdown (time
from scheduled to started per batch is where the broker's dispatch shows) and CPU by process
kind.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from datetime import timedelta
from typing import Any

from market_data.policy import parse_policy
from market_data.records import Tier
from market_data.universe import generated_entries
from tests.benchmarks.airflow_bench import BenchAirflow, airflow_bench
from tests.benchmarks.bench_sweep import (
    COLD_OFFSET,
    DAG_ID,
    MIC,
    bench_policy,
    bench_session,
    describe,
    measure_run,
)
from tests.benchmarks.harness import Row, log

NAME = "sweep-celery"
WORKERS = 2
TARGET_RATIO = 1.2
EXECUTORS = ("local", "celery")


def run(args: argparse.Namespace) -> list[Row]:
    n, steady_runs = args.sweep_symbols, max(1, args.sweep_runs - 1)
    policy_text = bench_policy(args.sweep_batch_size)
    batch_size = parse_policy(policy_text).tiers[Tier.T0].batch_size
    session_open = bench_session()
    cold_now = session_open + COLD_OFFSET
    universe = generated_entries(n, Tier.T0, MIC)
    log(f"{NAME}: {n:,} T0 symbols, {steady_runs} steady runs per executor, {WORKERS} Celery workers")
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in EXECUTORS}
    with contextlib.ExitStack() as stacks:
        benches: dict[str, BenchAirflow] = {
            executor: stacks.enter_context(
                airflow_bench(
                    f"sweep_{executor}",
                    policy_text,
                    universe,
                    unpause=[DAG_ID],
                    parallelism=args.sweep_parallelism,
                    celery_workers=WORKERS if executor == "celery" else 0,
                )
            )
            for executor in EXECUTORS
        }
        for k in range(steady_runs + 1):
            now = cold_now + timedelta(minutes=k)
            kind = "cold" if k == 0 else "steady"
            order = EXECUTORS if k % 2 == 0 else EXECUTORS[::-1]
            for executor in order:
                b = benches[executor]
                r = measure_run(b, f"bench_{kind}_{k + 1}", (now - timedelta(minutes=1), now), timeout=1800)
                r["kind"], r["executor"] = kind, executor
                if r["state"] != "success":
                    raise RuntimeError(
                        f"{executor} run {r['run_id']} {r['state']}:\n{b.stack.tail('scheduler')}"
                    )
                results[executor].append(r)
                log(f"{NAME} {executor} run {k + 1} ({kind}): {r['wall_s']} s")
                log(f"  stages: {describe(r)}")
    return rows_from(results, n, batch_size)


def rows_from(results: dict[str, list[dict[str, Any]]], n: int, batch_size: int) -> list[Row]:
    steady = {e: [r for r in results[e] if r["kind"] == "steady"] for e in EXECUTORS}
    walls = {e: [float(r["wall_s"]) for r in steady[e]] for e in EXECUTORS}
    local, celery = (statistics.median(walls[e]) for e in EXECUTORS)
    ratio = celery / local if local else float("nan")
    waits = {
        e: statistics.median(
            r["breakdown"]["stages"]["sweep"].get("queue_wait_s", {}).get("median") or 0.0 for r in steady[e]
        )
        for e in EXECUTORS
    }
    return [
        Row(
            benchmark=f"sweep: steady run on {WORKERS} Celery workers vs LocalExecutor",
            figure=f"{celery:.1f} s median (LocalExecutor {local:.1f} s)",
            baseline=f"LocalExecutor {local:.1f} s",
            ratio=ratio,
            target=f"<= {TARGET_RATIO}x",
            met=ratio <= TARGET_RATIO,
            details={
                "symbols": n,
                "batch_size": batch_size,
                "batches_per_run": -(-n // batch_size),
                "celery_workers": WORKERS,
                "walls_s": walls,
                "cold_walls_s": {
                    e: [r["wall_s"] for r in results[e] if r["kind"] == "cold"] for e in EXECUTORS
                },
                "batch_scheduled_to_start_median_s": waits,
                "wall_time": "Airflow dag run end_date - start_date; steady runs alternate between stacks",
                "runs": results,
            },
        )
    ]
