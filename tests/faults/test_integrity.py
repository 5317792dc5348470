"""Fault 6: the integrity check (`./dev integrity`) finds each kind of damage, and only damage.

Every fault test ends with it; here each check is shown to fail on the damage it exists for
(planted by hand), to pass on the clean store, and the DLQ check is run against a real
Airflow api-server (its REST API v2) after md_backfill sent a batch to the DLQ under
`dag.test()`; the task instance states it then sees are changed through the same REST API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from market_data import db
from market_data.airflow_rest import AirflowRest
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.ingest.pit_write import write_bars
from market_data.integrity import run_integrity_checks
from market_data.policy import parse_policy
from market_data.policy.store import reload_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from tests.conftest import AIRFLOW_HOME, TEST_ENV, truncate_data
from tests.e2e.airflow_stack import AirflowStack
from tests.faults.conftest import DEFAULT_POLICY, NOW, market_dsn
from tests.faults.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
POLICY = parse_policy(DEFAULT_POLICY)


async def seed_clean(conn: asyncpg.Connection) -> None:
    """Bars and cursors of two symbols, a done and a queued backfill job: a healthy store."""
    provider = SyntheticProvider("synthetic", clock=lambda: NOW)
    for symbol in ("AAPL", "MSFT"):
        bars = provider.bars_for(symbol, "XNAS", Interval.M1, MON, MON + timedelta(minutes=30), NOW)
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)  # a re-delivery adds nothing
    rng = BackfillRange(
        symbol="NVDA", interval=Interval.M1, start=MON, end=MON + timedelta(minutes=5), tier=Tier.T0
    )
    await enqueue_backfills(conn, [rng], POLICY)
    await conn.execute(
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status,
                                      finished_at, run_id, batch)
           VALUES ('AMZN', '1m', $1, $2, 'T0', 10, 'gap', 'done', now() - interval '1 hour', 'r',
                   'synthetic:0')""",
        MON,
        MON + timedelta(minutes=30),
    )


DAMAGE = {
    "bar_versions_unique": """
        INSERT INTO bars (symbol, interval, ts, as_of, provider, status, open, high, low, close, volume, vwap,
                          trade_count)
        SELECT symbol, interval, ts, as_of + interval '1 second', provider, status, open, high, low, close,
               volume, vwap, trade_count
        FROM bars WHERE symbol = 'AAPL' ORDER BY ts LIMIT 3""",
    "cursors_not_ahead": (
        "UPDATE ingestion_cursors SET last_ts = last_ts + interval '1 hour' WHERE symbol = 'MSFT'"
    ),
    "job_states_consistent": (
        "UPDATE backfill_jobs SET lease_until = now() + interval '1 hour' WHERE symbol = 'AMZN'"
    ),
    "done_ranges_not_requeued": """
        INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source)
        VALUES ('AMZN', '1m', '2026-11-23T14:40:00Z', '2026-11-23T14:45:00Z', 'T0', 10, 'gap')""",
}


@pytest.mark.parametrize("check", sorted(DAMAGE))
async def test_each_check_finds_its_damage_and_only_it(pg, check: str) -> None:
    conn = await asyncpg.connect(market_dsn(pg))
    try:
        await seed_clean(conn)
        clean = await run_integrity_checks(conn)
        assert clean.ok, clean.text()
        assert {c.name: c.status for c in clean.checks} == {
            **dict.fromkeys(DAMAGE, "ok"),
            "dlq_matches_airflow": "skipped",  # no Airflow database given: skipped, never "ok"
        }
        await conn.execute(DAMAGE[check])
        report = await run_integrity_checks(conn)
        assert not report.ok
        failed = [c for c in report.checks if c.status == "failed"]
        assert [c.name for c in failed] == [check], report.text()
        assert failed[0].violations >= 1 and failed[0].examples
        assert f"FAILED  {check}" in report.text()
    finally:
        await conn.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_data.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_reports_and_exits_non_zero_on_damage(pg) -> None:
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    try:
        await seed_clean(conn)
    finally:
        await conn.close()
    unreachable = f"http://127.0.0.1:{free_port()}"
    ok = await asyncio.to_thread(
        run_cli,
        "--database-url",
        dsn,
        "integrity",
        "--airflow-url",
        unreachable,
        env={"MD_AIRFLOW_API_PASSWORD": "not-used"},
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "integrity: OK" in ok.stdout
    assert re.search(
        rf"skipped dlq_matches_airflow: Airflow's REST API \({unreachable} as market_data_api\) cannot be "
        rf"used: Airflow at {unreachable} is not reachable",
        ok.stdout,
    ), ok.stdout
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(DAMAGE["cursors_not_ahead"])
    finally:
        await conn.close()
    bad = await asyncio.to_thread(run_cli, "--database-url", dsn, "integrity", "--json", "--no-airflow")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["cursors_not_ahead"] == "failed" and statuses["dlq_matches_airflow"] == "skipped"
    assert report["checks"][1]["examples"][0]["symbol"] == "MSFT"


async def test_without_an_airflow_url_the_dlq_check_is_skipped_saying_why(pg) -> None:
    dsn = market_dsn(pg)
    out = await asyncio.to_thread(
        run_cli, "--database-url", dsn, "integrity", "--json", env={"MD_AIRFLOW_API_URL": ""}
    )
    dlq = next(c for c in json.loads(out.stdout)["checks"] if c["name"] == "dlq_matches_airflow")
    assert (dlq["status"], dlq["detail"]) == (
        "skipped",
        "Airflow's REST API is not configured (MD_AIRFLOW_API_URL)",
    )


# -- the DLQ against a real Airflow (its REST API) ------------------------------------------------


@pytest.fixture(scope="module")
def airflow_api(airflow_db: str):
    """An Airflow api-server on the run's metadata database, as the service's own user sees it."""
    stack = AirflowStack(dict(TEST_ENV), AIRFLOW_HOME)
    stack.start(components=("api-server",))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def backfill_dag(airflow_db: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("md_backfill")
    for task in dag.tasks:  # no waiting between tries
        if task.task_id.startswith("backfill_"):
            task.retries = 1
            task.retry_delay = timedelta(0)
    return dag


def failing_policy() -> str:
    return re.sub(
        r"(\[providers\.synthetic(?:_backup)?\.faults\]\n)",
        r"\1error_rate = 1.0\n",
        DEFAULT_POLICY.replace("error_rate = 0.0\n", ""),
    )


async def _with(dsn: str, fn):
    c = await db.connect(dsn)
    try:
        return await fn(c)
    finally:
        await c.close()


def test_the_dlq_matches_the_failed_task_instances_of_airflow(
    backfill_dag, airflow_api, md_dsn, redis_client
) -> None:
    run = asyncio.run
    run(truncate_data(md_dsn))
    ranges = [
        BackfillRange(
            symbol=s, interval=Interval.M1, start=MON, end=MON + timedelta(minutes=30), tier=Tier.T0
        )
        for s in ("AAPL", "MSFT")
    ]
    run(_with(md_dsn, lambda c: enqueue_backfills(c, ranges, POLICY)))
    run(_with(md_dsn, lambda c: reload_policy(c, failing_policy(), actor="tests")))
    try:
        result = backfill_dag.test(logical_date=datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    finally:
        run(_with(md_dsn, lambda c: reload_policy(c, DEFAULT_POLICY, actor="tests")))
    assert result.state == "failed"

    async def report():
        client = AirflowRest(
            airflow_api.url, "market_data_api", credentials_file=airflow_api.credentials_file
        )
        try:
            return await _with(md_dsn, lambda c: run_integrity_checks(c, airflow=client))
        finally:
            await client.aclose()

    dead = run(
        _with(md_dsn, lambda c: c.fetch("SELECT run_id, batch FROM backfill_jobs WHERE status = 'dead'"))
    )
    assert len(dead) == 2 and len({(r["run_id"], r["batch"]) for r in dead}) == 1
    run_id, batch = dead[0]["run_id"], dead[0]["batch"]
    group, _, index = batch.rpartition(":")
    ti = (run_id, f"backfill_{group}", int(index))

    ok = run(report()).check("dlq_matches_airflow")
    assert ok.status == "ok" and ok.checked >= 2 and ok.violations == 0, ok

    def set_ti_state(state: str) -> None:  # as an operator would, through the REST API
        airflow_api.api(
            "PATCH", f"/dags/md_backfill/dagRuns/{ti[0]}/taskInstances/{ti[1]}/{ti[2]}", {"new_state": state}
        )

    # a dead batch whose task instance Airflow says succeeded: inconsistent
    set_ti_state("success")
    bad = run(report()).check("dlq_matches_airflow")
    assert bad.status == "failed" and bad.examples[0]["task_instance_state"] == "success"
    assert bad.examples[0]["batch"] == batch
    # cleared in the UI (waiting for the scheduler): not a violation (its jobs leave the DLQ when it runs)
    airflow_api.api(
        "POST",
        "/dags/md_backfill/clearTaskInstances",
        {"dry_run": False, "dag_run_id": ti[0], "task_ids": [[ti[1], ti[2]]], "only_failed": False},
    )
    rerun = run(report()).check("dlq_matches_airflow")
    assert rerun.status == "ok" and "being run again" in rerun.detail, rerun
    # a failed batch that still holds a running job (its failure callback never ran)
    set_ti_state("failed")
    run(
        _with(
            md_dsn,
            lambda c: c.execute(
                """UPDATE backfill_jobs SET status = 'running', lease_until = now() + interval '1 hour',
                          finished_at = NULL WHERE id = (SELECT min(id) FROM backfill_jobs)"""
            ),
        )
    )
    stuck = run(report()).check("dlq_matches_airflow")
    assert (
        stuck.status == "failed" and stuck.examples[0]["problem"] == "failed batch still holds running jobs"
    )
