"""md_backfill on CeleryExecutor with two workers under a real scheduler.

- The tasks of a run spread over both workers (each task instance's host name is its worker's
  `MD_WORKER_NAME`), and the provider's pool still caps the batches running at once across them.
- Provider health and rate limits stay shared through Redis: every call of both workers' task
  processes is in the one health history and the one rate-limit window (the breaker lives in
  the same store).
- A worker SIGKILLed in the middle of a batch, with its pool, supervisors and task processes
  (a machine that dies): the scheduler fails the task once its heartbeats stop, the retry runs
  on the other worker, and every job is done once and every expected bar stored exactly once.

The broker's keys live under the run's Redis prefix. Takes a few minutes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from market_data.policy import parse_policy
from market_data.policy.store import reload_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from tests.conftest import AIRFLOW_HOME, REDIS_PREFIX, TEST_ENV, truncate_data
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backfill_runs import (
    DEFAULT,
    MON,
    POOL_SET,
    POOL_SLOTS,
    e2e_policy,
    enqueue,
    peak_batches,
    prepare,
    settle_scheduled_runs,
    sql,
    trigger,
)

log = logging.getLogger(__name__)
pytestmark = pytest.mark.e2e
WORKERS = 2
HEARTBEAT_TIMEOUT_S = 20
KILL_BATCH_SIZE = 6


@pytest.fixture(scope="module")
def celery_stack(airflow_db: str, md_dsn: str, tmp_path_factory: pytest.TempPathFactory):
    policy_file: Path = tmp_path_factory.mktemp("celery") / "policy.toml"
    policy_file.write_text(e2e_policy())
    # active before md_backfill is unpaused: its timetable then plans the next run a day away
    # (the default's 5-minute cadence would start one in the middle of a test, taking its jobs)
    sql(md_dsn, lambda c: reload_policy(c, e2e_policy(), actor="e2e"))
    env = {
        **TEST_ENV,
        "MARKET_DATA_POLICY_FILE": str(policy_file),
        # a task whose worker died is failed (and retried) after 20 s without heartbeats, not 300
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    # 4 slots per worker: the workers could run 8 batches at once, the pool allows POOL_SLOTS
    s = AirflowStack(env, AIRFLOW_HOME, celery_workers=WORKERS, worker_concurrency=4)
    prepare(s, POOL_SET)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        sql(md_dsn, lambda c: reload_policy(c, DEFAULT, actor="e2e"))


def fresh_start(md_dsn: str, policy: str) -> None:
    """Empty tables, the policy active, no provider state in Redis from earlier tests."""
    sql(md_dsn, lambda c: truncate_data(md_dsn))
    sql(md_dsn, lambda c: reload_policy(c, policy, actor="e2e"))
    r = redis.Redis.from_url(TEST_ENV["REDIS_URL"])
    try:
        for pattern in (f"{REDIS_PREFIX}provider:*", f"{REDIS_PREFIX}ratelimit*"):
            keys = list(r.scan_iter(match=pattern))
            if keys:
                r.delete(*keys)
    finally:
        r.close()


def symbols_of(md_dsn: str, n: int) -> list[str]:
    rows = sql(
        md_dsn,
        lambda c: c.fetch(
            "SELECT symbol FROM symbol_universe WHERE tier IN ('T0', 'T1') ORDER BY symbol LIMIT $1", n
        ),
    )
    return [r[0] for r in rows]


def task_instances(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    page = stack.api("GET", f"/dags/md_backfill/dagRuns/{run_id}/taskInstances?limit=200")
    return list(page["task_instances"])


def shared_provider_state(provider: str) -> tuple[int, int]:
    """(samples in the provider's Redis health history, calls in its Redis rate-limit window)."""
    r = redis.Redis.from_url(TEST_ENV["REDIS_URL"])
    try:
        samples = int(r.llen(f"{REDIS_PREFIX}provider:{provider}:samples"))
        windows = [k for k in r.scan_iter(match=f"{REDIS_PREFIX}ratelimit*") if provider.encode() in k]
        return samples, sum(int(r.llen(k)) for k in windows)
    finally:
        r.close()


def test_tasks_spread_over_both_workers_the_pool_caps_them_and_provider_state_is_shared(
    celery_stack: AirflowStack, md_dsn: str
) -> None:
    fresh_start(md_dsn, e2e_policy())
    settle_scheduled_runs(celery_stack)
    symbols = symbols_of(md_dsn, 24)
    enqueue(md_dsn, symbols, 0)
    run = trigger(celery_stack)
    assert celery_stack.wait_for_run("md_backfill", run, {"success", "failed"}, timeout=600) == "success"
    assert dict(sql(md_dsn, lambda c: c.fetch("SELECT status, count(*) FROM backfill_jobs GROUP BY 1"))) == {
        "done": 24
    }

    tis = task_instances(celery_stack, run)
    hosts = Counter(ti["hostname"] for ti in tis if ti["state"] == "success")
    batch_hosts = Counter(ti["hostname"] for ti in tis if ti["task_id"] == "backfill_synthetic")
    log.info("e2e celery: task instances per worker %s; backfill batches per worker %s", hosts, batch_hosts)
    assert set(hosts) == set(celery_stack.workers), hosts  # every task ran on one of the two, both used

    peak = peak_batches(md_dsn, run, 12)
    log.info("e2e celery: 12 batches, pool of %d, peak %d concurrent across the workers", POOL_SLOTS, peak)
    assert peak <= POOL_SLOTS
    assert peak == POOL_SLOTS  # the pool, not the workers' 8 slots or a serial scheduler, bounds it

    # one call per job, from task processes on both workers: all in the one shared history and window
    assert shared_provider_state("synthetic") == (24, 24)


def test_a_worker_killed_mid_batch_has_the_batch_retried_on_the_other_and_nothing_lost_or_doubled(
    celery_stack: AirflowStack, md_dsn: str
) -> None:
    # one job at a time, 1.5 s per call: a batch of 6 takes about 10 s, so the kill lands inside
    policy = e2e_policy(batch_size=KILL_BATCH_SIZE, latency_ms=1500, max_concurrency=1)
    fresh_start(md_dsn, policy)
    settle_scheduled_runs(celery_stack)
    symbols = symbols_of(md_dsn, 2 * KILL_BATCH_SIZE)
    enqueue(md_dsn, symbols, 0)
    run = trigger(celery_stack)

    # wait for a batch that has finished some of its jobs but not all, and find its worker
    deadline = time.monotonic() + 300
    victim: tuple[str, str] | None = None
    while victim is None and time.monotonic() < deadline:
        partly = sql(
            md_dsn,
            lambda c: c.fetch(
                """SELECT batch FROM backfill_jobs WHERE run_id = $1
                   GROUP BY batch HAVING count(*) FILTER (WHERE status = 'done') BETWEEN 2 AND $2""",
                run,
                KILL_BATCH_SIZE - 2,
            ),
        )
        for row in partly:
            map_index = int(row["batch"].rsplit(":", 1)[1])
            ti = celery_stack.api(
                "GET", f"/dags/md_backfill/dagRuns/{run}/taskInstances/backfill_synthetic/{map_index}"
            )
            if ti["state"] == "running" and ti["hostname"] in celery_stack.workers:
                victim = (row["batch"], ti["hostname"])
                break
        time.sleep(0.2)
    assert victim is not None, "no batch was found half done"
    batch, worker = victim
    killed = celery_stack.kill_worker(worker)
    done_by_killed_try = sql(
        md_dsn,
        lambda c: c.fetchval(
            "SELECT count(*) FROM backfill_jobs WHERE run_id = $1 AND batch = $2 AND status = 'done'",
            run,
            batch,
        ),
    )
    log.info(
        "e2e celery: killed %s (%d processes) in batch %s after %d of %d jobs",
        worker,
        killed,
        batch,
        done_by_killed_try,
        KILL_BATCH_SIZE,
    )
    assert 2 <= done_by_killed_try < KILL_BATCH_SIZE

    final = celery_stack.wait_for_run("md_backfill", run, {"success", "failed"}, timeout=600)
    assert final == "success", celery_stack.tail("scheduler")
    survivor = next(w for w in celery_stack.workers if w != worker)
    map_index = int(batch.rsplit(":", 1)[1])
    retried = celery_stack.api(
        "GET", f"/dags/md_backfill/dagRuns/{run}/taskInstances/backfill_synthetic/{map_index}"
    )
    assert (retried["try_number"], retried["state"], retried["hostname"]) == (2, "success", survivor)
    log.info(
        "e2e celery: batch %s retried (try %d) on %s: %s",
        batch,
        retried["try_number"],
        retried["hostname"],
        retried["state"],
    )

    # every job done exactly once: the killed try's jobs stay done, the retry does only the rest
    assert dict(sql(md_dsn, lambda c: c.fetch("SELECT status, count(*) FROM backfill_jobs GROUP BY 1"))) == {
        "done": 2 * KILL_BATCH_SIZE
    }
    tries = sql(
        md_dsn,
        lambda c: c.fetch(
            """SELECT batch, try_number, outcome, jobs_done FROM backfill_batch_runs
               WHERE run_id = $1 ORDER BY id""",
            run,
        ),
    )
    killed_tries = [(t["try_number"], t["outcome"], t["jobs_done"]) for t in tries if t["batch"] == batch]
    assert killed_tries == [(1, None, None), (2, "done", KILL_BATCH_SIZE - done_by_killed_try)]
    assert done_by_killed_try + sum(t["jobs_done"] or 0 for t in tries) == 2 * KILL_BATCH_SIZE

    # every expected bar stored exactly once (one version: the data never changed since these
    # minutes ended long ago, so the policy's revisions were already applied when they were fetched)
    mics = dict(sql(md_dsn, lambda c: c.fetch("SELECT symbol, exchange_mic FROM symbol_universe")))
    synthetic = SyntheticProvider("synthetic", parse_policy(policy).providers["synthetic"].faults)
    now = datetime.now(MON.tzinfo)
    expected = sorted(
        (b.symbol, b.ts, b.close)
        for s in symbols
        for b in synthetic.bars_for(s, mics[s], Interval.M1, MON, MON + timedelta(minutes=20), now)
    )
    stored = sql(
        md_dsn,
        lambda c: c.fetch(
            "SELECT symbol, ts, close FROM bars WHERE symbol = ANY($1::text[]) ORDER BY symbol, ts", symbols
        ),
    )
    assert len(expected) > 0
    assert [tuple(r) for r in stored] == expected
