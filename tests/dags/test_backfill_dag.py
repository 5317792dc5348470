"""md_backfill under dag.test(): drains the queue, the DLQ, requeue, manual conf, refusals."""

from __future__ import annotations

import asyncio
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


def test_manual_conf_is_queued_first_and_runs_in_that_run(backfill_dag, md_dsn) -> None:
    run(queue_gaps(md_dsn, ["NVDA"]))
    conf = {
        "symbols": ["AAPL", "MSFT"],
        "interval": "5m",
        "start": "2026-11-23T14:30:00Z",
        "end": "2026-11-23T21:00:00Z",
    }
    result = backfill_dag.test(logical_date=LOGICAL, run_conf=conf)
    assert result.state == "success"
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


def test_conf_beyond_the_policy_fails_the_run_with_every_reason(backfill_dag, md_dsn, caplog, capfd) -> None:
    conf = {
        "symbols": ["AAPL", "NOPE"],
        "interval": "1m",
        "start": "2020-01-01T00:00:00Z",
        "end": "2020-03-01T00:00:00Z",
    }
    result = backfill_dag.test(logical_date=LOGICAL, run_conf=conf)
    assert result.state == "failed"
    assert run(with_conn(md_dsn, lambda c: c.fetchval("SELECT count(*) FROM backfill_jobs"))) == 0
    text = caplog.text + "".join(capfd.readouterr())
    assert "md_backfill conf refused" in text
    assert "backfill.max_range" in text and "backfill.max_age" in text and "NOPE" in text


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


@pytest.mark.parametrize(
    "conf,field",
    [
        ('{"symbols": ["aapl!"], "interval": "1m"}', "symbols"),
        ('{"symbols": ["AAPL"], "interval": "2m"}', "interval"),
        ('{"symbols": ["AAPL"], "interval": "1m", "start": "yesterday"}', "start"),
        ('{"symbols": "AAPL"}', "symbols"),
    ],
)
def test_the_cli_refuses_bad_conf_at_trigger_time(dagbag, airflow_db, conf: str, field: str) -> None:
    if not getattr(test_the_cli_refuses_bad_conf_at_trigger_time, "serialized", False):
        assert airflow_cli("dags", "reserialize").returncode == 0
        test_the_cli_refuses_bad_conf_at_trigger_time.serialized = True  # type: ignore[attr-defined]
    out = airflow_cli("dags", "trigger", "md_backfill", "--conf", conf)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Invalid input for param" in text and field in text, text[-2000:]
