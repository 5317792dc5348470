"""md_backfill under dag.test(): drains the queue, the DLQ, requeue, manual conf, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_data import db
from market_data.backfill.dlq import requeue_dead
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.policy import parse_policy
from market_data.policy.store import reload_policy
from market_data.records import Interval, Tier
from tests.conftest import TEST_ENV, truncate_data

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
LOGICAL = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def run(coro):
    return asyncio.run(coro)


async def with_conn(dsn: str, fn):
    c = await db.connect(dsn)
    try:
        return await fn(c)
    finally:
        await c.close()


async def queue_gaps(dsn: str, symbols: list[str]) -> None:
    policy = parse_policy(DEFAULT)

    async def go(c):
        await enqueue_backfills(
            c,
            [
                BackfillRange(
                    symbol=s, interval=Interval.M1, start=MON, end=MON + timedelta(minutes=30), tier=Tier.T0
                )
                for s in symbols
            ],
            policy,
        )

    await with_conn(dsn, go)


async def statuses(dsn: str) -> dict[str, str]:
    return await with_conn(dsn, lambda c: _dict(c.fetch("SELECT symbol, status FROM backfill_jobs")))


async def _dict(rows_coro):
    return {r[0]: r[1] for r in await rows_coro}


def failing_policy() -> str:
    """Both synthetic providers answer every call with HTTP 500."""
    return re.sub(
        r"(\[providers\.synthetic(?:_backup)?\.faults\]\n)",
        r"\1error_rate = 1.0\n",
        DEFAULT.replace("error_rate = 0.0\n", ""),
    )


@pytest.fixture
def backfill_dag(dagbag, md_dsn, redis_client):
    """md_backfill on empty tables and fresh provider health (redis_client drops the run's keys after)."""
    run(truncate_data(md_dsn))
    dag = dagbag.get_dag("md_backfill")
    for task in dag.tasks:  # no waiting between tries in tests (the DLQ path retries once)
        if task.task_id.startswith("backfill_"):
            task.retries = 1
            task.retry_delay = timedelta(0)
    yield dag
    run(with_conn(md_dsn, lambda c: reload_policy(c, DEFAULT, actor="tests")))


def test_a_run_drains_the_queue(backfill_dag, md_dsn) -> None:
    run(queue_gaps(md_dsn, ["AAPL", "MSFT", "NVDA"]))
    result = backfill_dag.test(logical_date=LOGICAL)
    assert result.state == "success"
    assert run(statuses(md_dsn)) == {"AAPL": "done", "MSFT": "done", "NVDA": "done"}
    bars = run(with_conn(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM bars")))
    assert bars == 3 * 30


def test_exhausted_retries_put_exactly_the_batch_in_the_dlq_and_requeue_brings_it_back(
    backfill_dag, md_dsn
) -> None:
    run(queue_gaps(md_dsn, ["AAPL", "MSFT"]))
    run(with_conn(md_dsn, lambda c: reload_policy(c, failing_policy(), actor="tests")))
    failed = backfill_dag.test(logical_date=LOGICAL)
    assert failed.state == "failed"
    rows = run(
        with_conn(md_dsn, lambda c: c.fetch("SELECT id, status, last_error, attempts FROM backfill_jobs"))
    )
    assert {r["status"] for r in rows} == {"dead"}
    # the first try's 500s opened the shared breaker; the retry found it open
    assert all(r["last_error"].startswith("AllProvidersFailed: bars:1m: synthetic") for r in rows)
    assert all(r["attempts"] == 2 for r in rows)  # the try and its one retry
    # the providers recover; the DLQ is requeued; the next run finishes the jobs
    run(with_conn(md_dsn, lambda c: reload_policy(c, DEFAULT, actor="tests")))
    for r in rows:
        assert run(with_conn(md_dsn, lambda c, i=r["id"]: requeue_dead(c, i)))
    ok = backfill_dag.test(logical_date=LOGICAL + timedelta(minutes=5))
    assert ok.state == "success"
    assert run(statuses(md_dsn)) == {"AAPL": "done", "MSFT": "done"}


def test_manual_conf_is_queued_first_and_runs_in_that_run_as_a_request(backfill_dag, md_dsn) -> None:
    run(queue_gaps(md_dsn, ["NVDA"]))
    conf = {
        "request": {
            "symbols": ["AAPL", "MSFT"],
            "interval": "5m",
            "start": "2026-11-23T14:30:00Z",
            "end": "2026-11-23T21:00:00Z",
        }
    }
    result = backfill_dag.test(logical_date=LOGICAL, run_conf=conf)
    assert result.state == "success"
    request = run(with_conn(md_dsn, lambda c: c.fetchrow("SELECT * FROM backfill_requests")))
    assert (request["source"], request["dag_run_id"], request["actor"]) == (
        "manual",
        result.run_id,
        f"airflow:{result.run_id}",
    )
    pushed = run(
        with_conn(
            md_dsn,
            lambda c: c.fetchval(
                "SELECT count(*) FROM backfill_request_jobs WHERE request_id = $1", request["id"]
            ),
        )
    )
    assert pushed == 2
    from market_data.backfill.requests import get_request

    view = run(with_conn(md_dsn, lambda c: get_request(c, request["id"])))
    assert view is not None and view.status == "done" and view.bars_written == 2 * 78
    rows = run(
        with_conn(
            md_dsn,
            lambda c: c.fetch(
                "SELECT symbol, source, priority, status, interval FROM backfill_jobs ORDER BY symbol"
            ),
        )
    )
    assert [(r["symbol"], r["source"], r["priority"], r["status"]) for r in rows] == [
        ("AAPL", "manual", 0, "done"),
        ("MSFT", "manual", 0, "done"),
        ("NVDA", "gap", 10, "done"),
    ]
    fives = run(with_conn(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM bars WHERE interval = '5m'")))
    assert fives == 2 * 78


def test_conf_the_policy_refuses_is_refused_when_the_run_is_created(backfill_dag, md_dsn) -> None:
    from airflow.exceptions import ParamValidationError

    conf = {
        "request": {
            "symbols": ["AAPL", "NOPE"],
            "interval": "1m",
            "start": "2020-01-01T00:00:00Z",
            "end": "2020-03-01T00:00:00Z",
        }
    }
    with pytest.raises(ParamValidationError) as refused:
        backfill_dag.test(logical_date=LOGICAL, run_conf=conf)
    text = str(refused.value)
    assert "md_backfill conf refused" in text
    assert "backfill.max_range" in text and "backfill.max_age" in text and "NOPE" in text
    assert run(with_conn(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM backfill_jobs"))) == 0


def test_a_request_that_became_invalid_before_its_run_fails_the_run_with_every_reason(
    backfill_dag, md_dsn, caplog, capfd
) -> None:
    """The run's first task checks the request again: a symbol retired after the trigger."""
    conf = {
        "request": {
            "symbols": ["AAPL", "MSFT"],
            "interval": "1m",
            "start": "2026-11-23T14:30:00Z",
            "end": "2026-11-23T15:30:00Z",
        }
    }
    from market_data.airflow import backfill_params

    accepted = backfill_params.refusal(conf["request"])
    assert accepted is None
    run(
        with_conn(
            md_dsn, lambda c: c.execute("UPDATE symbol_universe SET active = false WHERE symbol = 'MSFT'")
        )
    )
    try:
        backfill_params._POLICY.invalidate()
        original = backfill_params.refusal
        backfill_params.refusal = lambda request: None  # type: ignore[assignment]  (as if triggered before)
        try:
            result = backfill_dag.test(logical_date=LOGICAL, run_conf=conf)
        finally:
            backfill_params.refusal = original  # type: ignore[assignment]
    finally:
        run(
            with_conn(
                md_dsn, lambda c: c.execute("UPDATE symbol_universe SET active = true WHERE symbol = 'MSFT'")
            )
        )
    assert result.state == "failed"
    assert run(with_conn(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM backfill_jobs"))) == 0
    text = caplog.text + "".join(capfd.readouterr())
    assert "md_backfill conf refused: symbols: not in the active universe: MSFT" in text


def airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV}
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def serialized(dagbag, airflow_db) -> None:
    """The DAGs in the metadata database, as `airflow dags trigger` reads them."""
    out = airflow_cli("dags", "reserialize")
    assert out.returncode == 0, out.stderr[-2000:]


def request_conf(**fields: object) -> str:
    base = {
        "symbols": ["AAPL"],
        "interval": "1m",
        "start": "2026-11-23T14:30:00Z",
        "end": "2026-11-23T15:30:00Z",
    }
    return json.dumps({"request": {**base, **fields}})


@pytest.mark.parametrize(
    "conf,field",
    [
        (request_conf(symbols=["aapl!"]), "symbols"),
        (request_conf(interval="2m"), "interval"),
        (request_conf(start="yesterday"), "start"),
        (request_conf(symbols="AAPL"), "symbols"),
        ('{"request": {"symbols": ["AAPL"]}}', "interval"),
    ],
)
def test_the_cli_refuses_malformed_conf_at_trigger_time(serialized, conf: str, field: str) -> None:
    out = airflow_cli("dags", "trigger", "md_backfill", "--conf", conf)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Invalid input for param request" in text and field in text, text[-2000:]


@pytest.mark.parametrize(
    "fields,reason",
    [
        (
            {"start": "2020-01-02T14:30:00Z", "end": "2020-01-02T21:00:00Z"},
            "start: is older than backfill.max_age",
        ),
        ({"start": "2026-10-01T13:30:00Z"}, "end: the range is longer than backfill.max_range"),
        ({"symbols": ["AAPL", "ZZZZ"]}, "symbols: not in the active universe: ZZZZ"),
        ({"end": "2026-11-23T14:00:00Z"}, "end: must be after start"),
    ],
)
def test_the_cli_refuses_conf_beyond_the_active_policy_at_trigger_time_with_the_task_message(
    serialized, md_dsn, fields: dict[str, object], reason: str
) -> None:
    runs_before = manual_runs()
    out = airflow_cli("dags", "trigger", "md_backfill", "--conf", request_conf(**fields))
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-2000:]
    assert f"md_backfill conf refused: {reason}" in text, text[-2000:]
    assert manual_runs() == runs_before  # no run was made


def manual_runs() -> list[str]:
    out = airflow_cli("dags", "list-runs", "md_backfill", "-o", "json")
    assert out.returncode == 0, out.stderr[-2000:]
    return sorted(str(r["run_id"]) for r in cli_json(out.stdout) if str(r["run_id"]).startswith("manual__"))


def cli_json(stdout: str) -> list[dict[str, object]]:
    """The JSON list an `-o json` CLI command prints (after whatever Airflow logs first)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("[")]
    return json.loads(lines[-1]) if lines else []


def test_the_cli_accepts_a_request_within_the_policy(serialized) -> None:
    out = airflow_cli("dags", "trigger", "md_backfill", "--conf", request_conf(), "-o", "json")
    try:
        assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
        created = cli_json(out.stdout)[0]
        assert created["conf"]["request"]["symbols"] == ["AAPL"]  # type: ignore[index]
    finally:
        # no queued run may wait for a later scheduler (tests/e2e share this metadata database)
        assert airflow_cli("dags", "delete", "md_backfill", "-y").returncode == 0
        assert airflow_cli("dags", "reserialize").returncode == 0
