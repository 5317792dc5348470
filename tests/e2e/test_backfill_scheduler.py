"""md_backfill under a real scheduler: pools bound concurrency, the DLQ, and clearing a failed batch.

Started against the run's own metadata database; takes a few minutes.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_data.policy.store import reload_policy
from tests.conftest import AIRFLOW_HOME, TEST_ENV, truncate_data
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backfill_runs import (
    DEFAULT,
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


@pytest.fixture
def stack(airflow_db: str, md_dsn: str, tmp_path: Path):
    sql(md_dsn, lambda c: truncate_data(md_dsn))
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(e2e_policy())
    sql(md_dsn, lambda c: reload_policy(c, e2e_policy(), actor="e2e"))
    s = AirflowStack({**TEST_ENV, "MARKET_DATA_POLICY_FILE": str(policy_file)}, AIRFLOW_HOME)
    prepare(s)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        sql(md_dsn, lambda c: reload_policy(c, DEFAULT, actor="e2e"))


def wait_until_probe_due(provider: str, timeout: float) -> None:
    import redis
    from msgspec import json as mjson

    from market_data.registry.breaker import BreakerState
    from tests.conftest import REDIS_PREFIX

    r = redis.Redis.from_url(TEST_ENV["REDIS_URL"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = r.get(f"{REDIS_PREFIX}provider:{provider}:breaker")
            state = mjson.decode(raw, type=BreakerState) if raw else BreakerState()
            log.info("e2e: breaker of %s: %s, cooldown %ss", provider, state.state, state.cooldown)
            if state.state == "closed" or time.time() >= state.opened_at + state.cooldown:
                return
            time.sleep(min(5.0, max(0.5, state.opened_at + state.cooldown - time.time())))
    finally:
        r.close()
    raise TimeoutError(f"the breaker of {provider} did not let a probe through in {timeout} s")


def task_logs(run_id: str) -> str:
    """The run's task logs (for a failure message)."""
    base = AIRFLOW_HOME / "logs" / "dag_id=md_backfill" / f"run_id={run_id}"
    out = []
    for path in sorted(base.rglob("*.log")) if base.exists() else []:
        if "report" in str(path):
            continue
        errors = []
        for ln in path.read_text(errors="replace").splitlines():
            if '"error_detail"' in ln:
                detail = json.loads(ln)["error_detail"][0]
                errors.append(f"{detail['exc_type']}: {detail['exc_value']}"[:600])
            elif '"level":"warning"' in ln and "GitWildMatch" not in ln:
                errors.append(json.loads(ln)["event"][:300])
        if errors:
            out.append(f"== {path.relative_to(base)}: " + " | ".join(errors))
    return "\n".join(out)[-12000:]


def test_pools_bound_concurrency_the_dlq_holds_failures_and_clearing_reruns_them(stack, md_dsn) -> None:
    settle_scheduled_runs(stack)
    symbols = [
        r[0]
        for r in sql(
            md_dsn,
            lambda c: c.fetch(
                "SELECT symbol FROM symbol_universe WHERE tier IN ('T0', 'T1') ORDER BY symbol LIMIT 24"
            ),
        )
    ]
    enqueue(md_dsn, symbols, 0)
    started = time.monotonic()
    run = trigger(stack)
    assert stack.wait_for_run("md_backfill", run, {"success", "failed"}, timeout=600) == "success"
    drain_seconds = time.monotonic() - started
    statuses = dict(sql(md_dsn, lambda c: c.fetch("SELECT status, count(*) FROM backfill_jobs GROUP BY 1")))
    assert statuses == {"done": 24}
    peak = peak_batches(md_dsn, run, 12)
    drained = f"24 jobs in 12 batches, pool of {POOL_SLOTS}: peak {peak} concurrent, {drain_seconds:.0f}s"
    assert peak <= POOL_SLOTS, drained
    assert peak == POOL_SLOTS, drained  # the pool, not a serial scheduler, is what bounds it

    # A provider outage: every try of the run's batches fails; their jobs land in the DLQ.
    outage_end = datetime.now(UTC) + timedelta(seconds=60)
    sql(
        md_dsn,
        lambda c: reload_policy(
            c, e2e_policy((datetime.now(UTC) - timedelta(minutes=1), outage_end)), actor="e2e"
        ),
    )
    enqueue(md_dsn, symbols[:4], 60)
    failing = trigger(stack)
    assert stack.wait_for_run("md_backfill", failing, {"success", "failed"}, timeout=600) == "failed"
    dead = sql(md_dsn, lambda c: c.fetch("SELECT id, last_error FROM backfill_jobs WHERE status = 'dead'"))
    assert len(dead) == 4 and all("synthetic" in r["last_error"] for r in dead)

    # The outage ends; clearing the failed mapped instances re-runs exactly those jobs (with the
    # policy version their run started with: the outage window is in the past now).
    time.sleep(max(0.0, (outage_end - datetime.now(UTC)).total_seconds()) + 1)
    # as an operator would: clear once the provider's breaker lets a probe through again
    wait_until_probe_due("synthetic", timeout=700)
    stack.api(
        "POST",
        "/dags/md_backfill/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": failing,
            "only_failed": True,
            "include_downstream": True,
            "task_ids": ["backfill_synthetic"],
        },
    )
    stack.wait_for_run("md_backfill", failing, {"queued", "running", "success"}, timeout=60)
    final = stack.wait_for_run("md_backfill", failing, {"success", "failed"}, timeout=600)
    assert final == "success", task_logs(failing)
    after = dict(
        sql(
            md_dsn,
            lambda c: c.fetch(
                "SELECT id, status FROM backfill_jobs WHERE id = ANY($1::bigint[])", [r["id"] for r in dead]
            ),
        )
    )
    assert set(after.values()) == {"done"}
    assert sql(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM backfill_jobs WHERE status <> 'done'")) == 0
