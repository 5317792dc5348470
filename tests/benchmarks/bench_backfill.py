"""backfill: md_backfill draining a 30-minute outage of 100 T0 symbols vs the rate-limit floor.

The rate limit has to be what bounds the drain, so the bench policy gives the synthetic
provider a real vendor's limit (`--backfill-rate`, 60 calls/min: Finnhub's free tier) and
disables synthetic_backup (a drain is pinned to one provider; the second instance would only
add capacity the floor does not count). Everything else is the default policy (backfill:
claim_limit 500, batch_size 20, retries 3 from 30 s; the provider_synthetic pool of 4 slots,
max_concurrency 8 per batch).

The backlog comes from the sweep's own gap detection, in this process, with the synthetic
provider's clock set to the sweep's `now` (as the fault tests do): the policy has an outage
window `[T+1m, T+31m)` (`[providers.synthetic.faults] outages`), T being an hour into a past
full NYSE session. `plan_sweep` + `run_sweep_batch` (the code of md_sweep_t0's tasks) run at T
(cold: the previous session and this one's first hour are stored, cursors at T), at T+1m
(inside the outage: every request fails with 503, the cursors stay), and at T+31m, after it:
that sweep fetches the tier's lookback (15 minutes) itself, and gap detection queues the
older part of the hole, one job per symbol (`enqueue_backfills`, coalesced, priority T0). The
sweeps of T+2m..T+30m would fail the same way and are skipped; the in-process registry keeps
its breakers and limits in memory, so the drain starts with empty shared state. The outage
window lies in the past of the wall clock, so the drain's task processes see no outage.

The drain: md_backfill triggered by hand under a real scheduler (LocalExecutor), runs
repeated until no job is queued or running. Drain time = the first run's start_date (Airflow)
to the last job's `finished_at` (backfill_jobs), both written from this machine's clock.

Calls: *needed* = one request per job and chunk of the provider's max_range (the synthetic
provider has none, so one per job: it is asked one symbol per backfill request); *made* = every
call that reached the provider, counted from the task processes' statsd packets
(`provider_latency_ms.synthetic.bars`, sent once per call, success or failure) received by
this process, with their arrival times.

The floor: the registry's limiter is a moving window (60 s + its 1 s safety margin) that starts
empty, so it admits the first `calls_per_minute` calls at once and each further
`calls_per_minute` one window later: the last call cannot go out before
floor((needed - 1) / rate) x 61 s. That is the floor the ratio and the 1.2x target use. The
nominal needed / rate minutes is shown too, but it is not a floor when the window starts
empty (a drain of 100 calls at 60/min can end after ~61 s, well under the nominal 100 s; judged
against it, a drain slowed down by failing batch tries still looked fine). When every needed
call fits into the first window the rate limit does not bound the drain, and the row says so
instead of judging it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from market_data.backfill.claim import ClaimedJob
from market_data.backfill.execute import chunks
from market_data.ingest.sweep import SweepFailed, plan_sweep, run_sweep_batch
from market_data.policy import load_active_policy
from market_data.providers.synthetic import SyntheticProvider, faults_with_env
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry
from market_data.registry.limiter import SAFETY_MARGIN, CallLimiter
from market_data.registry.state import MemoryHealthStore
from market_data.settings import get_settings
from market_data.universe import generated_entries
from tests.benchmarks.airflow_bench import BenchAirflow, airflow_bench, parse_ts, run_sql, stage_breakdown
from tests.benchmarks.bench_sweep import MIC, bench_session
from tests.benchmarks.harness import Row, default_policy_text, edit_policy, log

NAME = "backfill"
DAG_ID = "md_backfill"
TARGET = 1.2
OUTAGE = timedelta(minutes=30)
INTO_SESSION = timedelta(hours=1)


def bench_policy(rate: int, outage: tuple[datetime, datetime]) -> str:
    window = f"outages = [{{start = {outage[0].isoformat()}, end = {outage[1].isoformat()}}}]"
    return edit_policy(
        default_policy_text(),
        [
            (
                r"(\[providers\.synthetic\]\n(?:.*\n)*?)calls_per_minute = 6000",
                rf"\g<1>calls_per_minute = {rate}",
            ),
            (r'(\[providers\.synthetic_backup\]\nkind = "synthetic"\n)enabled = true', r"\1enabled = false"),
            (r"^outages = \[\]$", window),
        ],
    )


async def produce_backlog(dsn: str, t: datetime) -> dict[str, Any]:
    """Sweeps at T, T+1m (outage) and T+31m in this process; returns what each did."""
    conn = await asyncpg.connect(dsn)
    try:
        loaded = await load_active_policy(conn, get_settings().policy_file)
        cfg = loaded.policy.providers["synthetic"]
        clock = [t]
        store = MemoryHealthStore()
        registry = ProviderRegistry(
            loaded.policy,
            {
                "synthetic": SyntheticProvider(
                    "synthetic", faults_with_env(cfg.faults), clock=lambda: clock[0]
                )
            },
            store=store,
            limiter=CallLimiter(None, ""),
            clock=lambda: clock[0].timestamp(),
            retry_wait=lambda _state: 0.0,
        )
        steps: dict[str, Any] = {}
        for label, at in (
            ("before", t),
            ("outage", t + timedelta(minutes=1)),
            ("after", t + OUTAGE + timedelta(minutes=1)),
        ):
            clock[0] = at
            batches = await plan_sweep(conn, loaded, Tier.T0, at)
            step: dict[str, Any] = {"now": at.isoformat(), "jobs": sum(len(b.jobs) for b in batches)}
            for batch in batches:
                try:
                    r = await run_sweep_batch(conn, loaded.policy, batch, registry)
                except SweepFailed as exc:
                    step["failed"] = str(exc)[:200]
                    continue
                for key in ("requests", "bars_inserted", "gaps_found", "gap_bars", "backfills_queued"):
                    step[key] = step.get(key, 0) + getattr(r, key)
            steps[label] = step
        await registry.aclose()
        return steps
    finally:
        await conn.close()


async def job_figures(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT j.id, j.symbol, j.interval, j.start_ts, j.end_ts, j.tier, j.source, j.status,
                      j.finished_at, j.attempts, j.created_at, u.exchange_mic
               FROM backfill_jobs j JOIN symbol_universe u USING (symbol) ORDER BY j.id"""
        )
        batches = await conn.fetch(
            """SELECT run_id, batch, try_number, started_at, finished_at, outcome, jobs_done
               FROM backfill_batch_runs ORDER BY id"""
        )
        return {"jobs": [dict(r) for r in rows], "batch_runs": [dict(r) for r in batches]}
    finally:
        await conn.close()


def calls_needed(jobs: list[dict[str, Any]]) -> int:
    """One request per job and chunk of the synthetic provider's max_range (it has none)."""
    max_range = SyntheticProvider().capabilities.max_range
    total = 0
    for j in jobs:
        claimed = ClaimedJob(
            id=j["id"],
            symbol=j["symbol"],
            interval=Interval(j["interval"]),
            start=j["start_ts"],
            end=j["end_ts"],
            tier=Tier(j["tier"]),
            exchange_mic=j["exchange_mic"],
            source=j["source"],
        )
        total += len(chunks(claimed, max_range.get(claimed.interval)))
    return total


def drain(b: BenchAirflow, max_runs: int, timeout: float) -> list[dict[str, Any]]:
    """Trigger md_backfill until nothing is queued or running; each run's figures."""
    runs: list[dict[str, Any]] = []
    for k in range(max_runs):
        run_id = f"bench_drain_{k + 1}"
        b.trigger(DAG_ID, run_id)
        run = b.wait_run(DAG_ID, run_id, timeout=timeout)
        tis = b.task_instances(DAG_ID, run_id)
        runs.append(
            {"run_id": run_id, "state": run["state"], "run": run, "breakdown": stage_breakdown(run, tis)}
        )
        left = run_sql(
            b.md,
            lambda c: c.fetchval("SELECT count(*) FROM backfill_jobs WHERE status IN ('queued', 'running')"),
        )
        log(f"backfill: {run_id} {run['state']} in {runs[-1]['breakdown']['wall_s']} s; {left} job(s) left")
        log(f"  stages: {describe(runs[-1]['breakdown'])}")
        if not left:
            break
    return runs


def describe(b: dict[str, Any]) -> str:
    """One line of a run's per-stage breakdown: when each task (group) started and ended."""
    parts = []
    started = [
        (s["first_start_s"], task_id, s)
        for task_id, s in b["stages"].items()
        if s.get("first_start_s") is not None
    ]
    for _, task_id, s in sorted(started):  # tasks never started (no batches for a provider) left out
        d = s.get("duration_s")
        each = f", each median {d['median']} s, max {d['max']} s" if isinstance(d, dict) else ""
        label = f"{task_id} x{s['instances']}" if s["instances"] > 1 else task_id
        parts.append(f"{label} {s['first_start_s']}-{s['last_end_s']} s{each}")
    parts.append(f"no task running {b['no_task_running_total_s']} s")
    return " | ".join(parts)


def run(args: argparse.Namespace) -> list[Row]:
    n, rate = args.backfill_symbols, args.backfill_rate
    t = bench_session(MIC) + INTO_SESSION
    outage = (t + timedelta(minutes=1), t + OUTAGE + timedelta(minutes=1))
    policy_text = bench_policy(rate, outage)
    universe = generated_entries(n, Tier.T0, MIC)
    log(
        f"backfill: {n} T0 symbols, outage {outage[0]:%Y-%m-%d %H:%M}-{outage[1]:%H:%M} UTC, {rate} calls/min"
    )
    with airflow_bench(NAME, policy_text, universe, unpause=[DAG_ID], statsd=True) as b:
        assert b.statsd is not None
        backlog = asyncio.run(produce_backlog(b.md.dsn, t))
        log(f"backfill: backlog from gap detection: {backlog['after'].get('backfills_queued', 0)} job(s)")
        queued = asyncio.run(job_figures(b.md.dsn))["jobs"]
        if not queued:
            raise RuntimeError(f"gap detection queued nothing: {backlog}")
        since = datetime.now().timestamp()
        runs = drain(b, args.backfill_max_runs, timeout=1800)
        figures = asyncio.run(job_figures(b.md.dsn))
        calls = [p.at for p in b.statsd.matching("market_data.provider_latency_ms.synthetic.bars", since)]
        errors = len(b.statsd.matching("market_data.provider_errors_total.synthetic.", since))
    return rows_from(n, rate, backlog, runs, figures, calls, errors, outage)


def rows_from(
    n: int,
    rate: int,
    backlog: dict[str, Any],
    runs: list[dict[str, Any]],
    figures: dict[str, Any],
    calls: list[float],
    errors: int,
    outage: tuple[datetime, datetime],
) -> list[Row]:
    jobs = figures["jobs"]
    statuses: dict[str, int] = {}
    for j in jobs:
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
    needed = calls_needed(jobs)
    first_start = parse_ts(runs[0]["run"]["start_date"])
    assert first_start is not None
    finished = [j["finished_at"] for j in jobs if j["status"] == "done"]
    last_done = max(finished) if finished else None
    drain_s = (last_done - first_start).total_seconds() if last_done else float("nan")
    window = 60 + SAFETY_MARGIN
    nominal_floor = needed / rate * 60
    floor_s = float(((needed - 1) // rate) * window) if needed else 0.0
    calls_made = len(calls)
    t0 = first_start.timestamp()
    per_10s = Counter(int((at - t0) // 10) * 10 for at in calls)
    done = statuses.get("done", 0) == len(jobs)
    bounded = floor_s > 0
    ratio = drain_s / floor_s if bounded else None
    tries = figures["batch_runs"]
    return [
        Row(
            benchmark=f"backfill: drain of a {OUTAGE.seconds // 60}-min outage, {n} T0 symbols",
            figure=f"{drain_s:.0f} s, {calls_made} calls ({needed} needed)",
            baseline=f"floor {floor_s:.0f} s ({needed} calls, {rate}/min window)",
            ratio=ratio,
            target=f"<= {TARGET}x floor",
            met=(done and ratio is not None and ratio <= TARGET) if bounded else None,
            details={
                "symbols": n,
                "calls_per_minute": rate,
                "outage_window": [outage[0].isoformat(), outage[1].isoformat()],
                "backlog": backlog,
                "jobs": len(jobs),
                "job_statuses": statuses,
                "job_minutes": sorted(
                    {int((j["end_ts"] - j["start_ts"]).total_seconds() // 60) for j in jobs}
                ),
                "calls_needed": needed,
                "calls_made": calls_made,
                "provider_errors": errors,
                "calls_per_10s_from_first_run_start": dict(sorted(per_10s.items())),
                "first_call_after_s": round(min(calls) - t0, 2) if calls else None,
                "last_call_after_s": round(max(calls) - t0, 2) if calls else None,
                "floor_s": floor_s,
                "floor_what": f"floor((needed - 1) / rate) windows of {window} s: when the limiter can "
                "admit the last call, starting empty",
                "nominal_floor_s": round(nominal_floor, 1),
                "ratio_to_nominal_floor": round(drain_s / nominal_floor, 3),
                "rate_limit_bounds_the_drain": bounded,
                "drain_s": round(drain_s, 1),
                "drain": "first md_backfill run's start_date -> last backfill_jobs.finished_at",
                "batch_tries": len(tries),
                "batch_tries_failed": sum(1 for r in tries if (r["outcome"] or "").startswith("failed")),
                "attempts_per_job": dict(sorted(Counter(j["attempts"] for j in jobs).items())),
                "runs": [{k: v for k, v in r.items() if k != "run"} for r in runs],
            },
        )
    ]
