"""Enqueue-to-running under a real scheduler: announced jobs start in seconds, others at the cadence.

md_backfill keeps the default policy's 5-minute cadence. Jobs queued through POST /ops/backfill
(the API posts an asset event over Airflow's REST API with its own user) and by a sweep that found
gaps (an event through its AssetAlias outlet) are claimed by an asset-triggered run within
seconds; jobs queued with no event wait for the next scheduled run. Enqueue-to-running is a
job's `created_at` (for a request: the request's) to its `claimed_at`, both Postgres clocks. The
figures are logged (run with `-o log_cli=true --log-cli-level=INFO` to see them); the bound
asserted is far above them, so the test fails only when a wake-up path is broken.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.policy import parse_policy
from market_data.records import Interval, Tier
from market_data.settings import get_settings
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.backfill_runs import DEFAULT, edit, settle_scheduled_runs, sql
from tests.e2e.test_backfill_scheduler import running_stack, task_logs

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e
CADENCE = 300.0
"""The default policy's backfill.cadence (5m), kept here: the baseline the events beat."""
WAKEUP_BOUND = 60.0
"""Seconds an announced job may take to start: well above the measured few seconds, well below
the cadence, so only a broken wake-up path fails it."""
LABEL = re.compile(r"^synthetic [A-Z0-9.\-]+(\.\.[A-Z0-9.\-]+)? \(\d+\)$")
REQUEST = {
    "symbols": ["AAPL", "MSFT"],
    "interval": "1m",
    "start": "2026-11-23T14:30:00Z",
    "end": "2026-11-23T16:00:00Z",
}


def wakeup_policy() -> str:
    """The default policy, with 1% of bars missing for good from the one provider that serves
    (so a sweep finds gaps to queue)."""
    doc = edit(
        DEFAULT,
        [
            (r"^drop_rate = 0.0$", "drop_rate = 0.01"),
            (r'^drop_heal = "10m"$', 'drop_heal = "3650d"'),
            (r'(\[providers\.synthetic_backup\]\nkind = "synthetic"\n)enabled = true', r"\1enabled = false"),
        ],
    )
    assert parse_policy(doc).backfill.cadence.seconds == CADENCE
    return doc


@pytest.fixture
def stack(airflow_db: str, md_dsn: str, tmp_path: Path) -> Iterator[AirflowStack]:
    with running_stack(md_dsn, wakeup_policy(), tmp_path) as s:
        yield s


def wait_for_quiet_window(stack: AirflowStack, needed: float = 180.0) -> None:
    """Until no md_backfill run is active and at least `needed` seconds remain before the next
    cadence run, so that a run the cadence starts cannot be the one that claims the jobs."""
    left = CADENCE - time.time() % CADENCE
    if left < needed:
        time.sleep(left + 5)
    settle_scheduled_runs(stack)
    assert CADENCE - time.time() % CADENCE > needed / 2, "the quiet window closed while settling"


def claimed(md_dsn: str, where: str, args: tuple[Any, ...], timeout: float) -> list[dict[str, Any]]:
    """Jobs matching `where` once each has been claimed (claimed_at set)."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = sql(
            md_dsn,
            lambda c: c.fetch(
                f"SELECT id, created_at, claimed_at, run_id FROM backfill_jobs WHERE {where}", *args
            ),
        )
        if rows and all(r["claimed_at"] is not None for r in rows):
            return [dict(r) for r in rows]
        time.sleep(0.5)
    raise TimeoutError(f"jobs ({where}) not claimed in {timeout} s: {[dict(r) for r in rows]}")


def run_type(stack: AirflowStack, dag_id: str, run_id: str) -> str:
    return str(stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["run_type"])


def grid_labels(stack: AirflowStack, dag_id: str, run_id: str, prefix: str) -> list[str]:
    tis = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    return [
        ti["rendered_map_index"] for ti in tis if ti["task_id"].startswith(prefix) and ti["map_index"] >= 0
    ]


def post_backfill(stack: AirflowStack) -> dict[str, Any]:
    """POST /ops/backfill on an API process configured as ./dev configures it (its own Airflow user)."""
    settings = msgspec.structs.replace(
        get_settings(), airflow_api_url=stack.url, airflow_api_credentials_file=stack.credentials_file
    )

    async def go() -> dict[str, Any]:
        async with AsyncTestClient(app=create_app(settings)) as c:
            r = await c.post(
                "/ops/backfill", json=REQUEST, headers={"Authorization": f"Bearer {settings.ops_token}"}
            )
            assert r.status_code == 202, r.text
            metrics = (await c.get("/metrics")).text
        assert 'backfill_wakeups_total{outcome="ok"} 1.0' in metrics, metrics
        return dict(r.json())

    return asyncio.run(go())


def test_announced_jobs_start_in_seconds_and_unannounced_ones_at_the_next_cadence_run(stack, md_dsn) -> None:
    settle_scheduled_runs(stack)

    # A request the policy refuses is refused by the REST trigger itself, with the task's message.
    refused = httpx.post(
        f"{stack.url}/api/v2/dags/md_backfill/dagRuns",
        json={
            "logical_date": None,
            "conf": {"request": {**REQUEST, "start": "2020-01-02T14:30:00Z", "end": "2020-01-02T16:00:00Z"}},
        },
        headers={"Authorization": f"Bearer {stack.token()}"},
        timeout=30,
    )
    assert refused.status_code == 400, refused.text
    assert "md_backfill conf refused: start: is older than backfill.max_age" in refused.text

    # 1. POST /ops/backfill: the API wakes md_backfill through Airflow's REST API.
    wait_for_quiet_window(stack)
    queued = post_backfill(stack)
    jobs = claimed(md_dsn, "id = ANY($1::bigint[])", (queued["job_ids"],), timeout=WAKEUP_BOUND * 2)
    asked = sql(
        md_dsn,
        lambda c: c.fetchval("SELECT created_at FROM backfill_requests WHERE id = $1", queued["request_id"]),
    )
    api_seconds = max((j["claimed_at"] - asked).total_seconds() for j in jobs)
    log.info("enqueue-to-running, POST /ops/backfill + asset event: %.1f s", api_seconds)
    assert {run_type(stack, "md_backfill", j["run_id"]) for j in jobs} == {"asset_triggered"}
    assert api_seconds < WAKEUP_BOUND
    api_run = jobs[0]["run_id"]
    assert stack.wait_for_run("md_backfill", api_run, {"success", "failed"}, timeout=300) == "success"
    assert all(LABEL.match(label) for label in grid_labels(stack, "md_backfill", api_run, "backfill_")), (
        grid_labels(stack, "md_backfill", api_run, "backfill_")
    )

    # 2. A sweep that finds gaps: its batch emits the asset event through its AssetAlias outlet.
    wait_for_quiet_window(stack)
    stack.api("PATCH", "/dags/md_sweep_t0", {"is_paused": False})
    try:
        sweep_run = str(stack.api("POST", "/dags/md_sweep_t0/dagRuns", {"logical_date": None})["dag_run_id"])
        try:
            gaps = claimed(md_dsn, "source = 'gap'", (), timeout=WAKEUP_BOUND * 4)
        except TimeoutError as exc:
            logs = task_logs(sweep_run, "md_sweep_t0", ("sweep batch [", "plan T0"))
            raise AssertionError(f"{exc}\n{stack.run_state('md_sweep_t0', sweep_run)}\n{logs}") from exc
        waits = sorted((j["claimed_at"] - j["created_at"]).total_seconds() for j in gaps)
        sweep_seconds = waits[-1]  # the job that waited longest
        log.info(
            "enqueue-to-running, sweep gaps + asset event: %.1f-%.1f s (%d jobs)",
            waits[0],
            waits[-1],
            len(gaps),
        )
        assert {run_type(stack, "md_backfill", j["run_id"]) for j in gaps} == {"asset_triggered"}
        assert sweep_seconds < WAKEUP_BOUND
        assert stack.wait_for_run("md_sweep_t0", sweep_run, {"success", "failed"}, timeout=300) == "success"
        labels = grid_labels(stack, "md_sweep_t0", sweep_run, "sweep")
        assert labels and all(LABEL.match(label) for label in labels), labels
    finally:
        stack.api("PATCH", "/dags/md_sweep_t0", {"is_paused": True})
    settle_scheduled_runs(stack)

    # 3. The cadence alone (what a queued job had before): no event, the next scheduled run.
    policy = parse_policy(DEFAULT)
    enqueued = sql(
        md_dsn,
        lambda c: enqueue_backfills(
            c,
            [
                BackfillRange(
                    symbol="NVDA",
                    interval=Interval.M1,
                    start=datetime(2026, 11, 24, 14, 30, tzinfo=UTC),
                    end=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
                    tier=Tier.T0,
                )
            ],
            policy,
        ),
    )
    [job] = claimed(md_dsn, "id = ANY($1::bigint[])", (enqueued.job_ids,), timeout=CADENCE + 120)
    cadence_seconds = (job["claimed_at"] - job["created_at"]).total_seconds()
    log.info("enqueue-to-running, cadence only (no event): %.1f s", cadence_seconds)
    assert run_type(stack, "md_backfill", job["run_id"]) == "scheduled"
