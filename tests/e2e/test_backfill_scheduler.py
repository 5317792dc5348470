"""md_backfill under a real scheduler: pools bound concurrency, the DLQ, and clearing a failed batch.

Started against the run's own metadata database; takes a few minutes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_data import db
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.policy import parse_policy
from market_data.policy.store import reload_policy
from market_data.records import Interval, Tier
from tests.conftest import AIRFLOW_HOME, TEST_ENV, truncate_data
from tests.e2e.airflow_stack import AirflowStack

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
POOL_SLOTS = 2


def edit(doc: str, changes: list[tuple[str, str]]) -> str:
    """The policy text with each (pattern, replacement) applied once (each must match)."""
    for pattern, repl in changes:
        doc, n = re.subn(pattern, repl, doc, count=1, flags=re.M)
        assert n == 1, pattern
    return doc


def e2e_policy(outage: tuple[datetime, datetime] | None = None) -> str:
    """Small batches, one fast retry, slow calls (so batches overlap), only the synthetic provider;
    optionally an outage window (wall clock) of that provider."""
    doc = edit(
        DEFAULT,
        [
            (r"^batch_size = 20$", "batch_size = 2"),
            (r"^retries = 3$", "retries = 1"),
            (r'^retry_delay = "30s"$', 'retry_delay = "2s"'),
            (r'^cadence = "5m"$', 'cadence = "1d"'),  # one scheduled run at unpause, none during the test
            (r'(\[providers\.synthetic_backup\]\nkind = "synthetic"\n)enabled = true', r"\1enabled = false"),
            (r"^latency_ms = 0$", "latency_ms = 400"),
        ],
    )
    if outage is not None:
        window = f"outages = [{{start = {outage[0].isoformat()}, end = {outage[1].isoformat()}}}]"
        doc, n = re.subn(r"^outages = \[\]$", window, doc, count=1, flags=re.M)
        assert n == 1
    parse_policy(doc)
    return doc


async def _run(dsn: str, fn):
    c = await db.connect(dsn)
    try:
        return await fn(c)
    finally:
        await c.close()


def sql(dsn: str, fn):
    return asyncio.run(_run(dsn, fn))


def enqueue(dsn: str, symbols: list[str], offset_minutes: int) -> None:
    policy = parse_policy(DEFAULT)

    async def go(c):
        tiers = dict(await c.fetch("SELECT symbol, tier FROM symbol_universe"))
        await enqueue_backfills(
            c,
            [
                BackfillRange(
                    symbol=s,
                    interval=Interval.M1,
                    start=MON + timedelta(minutes=offset_minutes),
                    end=MON + timedelta(minutes=offset_minutes + 20),
                    tier=Tier(tiers[s]),
                )
                for s in symbols
            ],
            policy,
        )

    sql(dsn, go)


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@contextmanager
def running_stack(
    md_dsn: str, policy: str, tmp_path: Path, *setup: tuple[str, ...]
) -> Iterator[AirflowStack]:
    """Empty data tables, `policy` active (and as the policy file), the pools and DAGs in place,
    md_backfill unpaused, the `setup` CLI commands run, then a running Airflow; afterwards the
    default policy is active again."""
    sql(md_dsn, lambda c: truncate_data(md_dsn))
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(policy)
    sql(md_dsn, lambda c: reload_policy(c, policy, actor="e2e"))
    s = AirflowStack({**TEST_ENV, "MARKET_DATA_POLICY_FILE": str(policy_file)}, AIRFLOW_HOME)
    for args in (
        ("pools", "import", str(ROOT / "include" / "pools.json")),
        *setup,
        ("dags", "reserialize"),
        ("dags", "unpause", "md_backfill"),
    ):
        out = s.cli(*args)
        assert out.returncode == 0, out.stderr[-2000:]
    s.start()
    try:
        yield s
    finally:
        s.stop()
        sql(md_dsn, lambda c: reload_policy(c, DEFAULT, actor="e2e"))


@pytest.fixture
def stack(airflow_db: str, md_dsn: str, tmp_path: Path) -> Iterator[AirflowStack]:
    with running_stack(
        md_dsn,
        e2e_policy(),
        tmp_path,
        ("pools", "set", "provider_synthetic", str(POOL_SLOTS), "e2e: two batches at a time"),
    ) as s:
        yield s


def settle_scheduled_runs(stack: AirflowStack) -> None:
    """Let the one scheduled run that unpausing creates finish before the test's own runs."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = stack.api("GET", "/dags/md_backfill/dagRuns")["dag_runs"]
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            return
        time.sleep(2)


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


def task_logs(run_id: str, dag_id: str = "md_backfill", events: tuple[str, ...] = ()) -> str:
    """The run's task logs (for a failure message): errors, warnings and lines containing `events`."""
    base = AIRFLOW_HOME / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
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
            elif events and any(e in ln for e in events):
                errors.append(json.loads(ln)["event"][:600])
        if errors:
            out.append(f"== {path.relative_to(base)}: " + " | ".join(errors))
    return "\n".join(out)[-12000:]


def trigger(stack: AirflowStack) -> str:
    return str(stack.api("POST", "/dags/md_backfill/dagRuns", {"logical_date": None})["dag_run_id"])


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
    spans = [
        (r["started_at"], r["finished_at"])
        for r in sql(
            md_dsn,
            lambda c: c.fetch(
                """SELECT started_at, finished_at FROM backfill_batch_runs
                   WHERE provider = 'synthetic' AND run_id = $1""",
                run,
            ),
        )
    ]
    assert len(spans) == 12 and all(e is not None for _, e in spans)
    peak = max_overlap(spans)
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
