"""CeleryExecutor settings (`market_data.airflow.executor`) and how ./dev takes them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from market_data.airflow.executor import BROKER_KEY_SUFFIX, celery_env, worker_args, worker_concurrency
from market_data.airflow.worker_name import HOSTNAME_CALLABLE, task_hostname

ROOT = Path(__file__).resolve().parents[2]
CONN = "postgresql+psycopg2://postgres@127.0.0.1:5432/market_data_airflow"


def test_workers_share_the_parallelism_with_at_least_one_slot_each() -> None:
    assert worker_concurrency(16, 2) == 8
    assert worker_concurrency(16, 3) == 6  # rounded up: the scheduler's parallelism still caps the total
    assert worker_concurrency(2, 5) == 1


def test_the_broker_lives_under_the_installation_s_redis_prefix_and_results_in_the_metadata_db() -> None:
    env = celery_env(redis_url="redis://r:6379/0", redis_prefix="md:", sql_alchemy_conn=CONN, concurrency=8)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://r:6379/0"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "md:" + BROKER_KEY_SUFFIX
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + CONN
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "8"
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == HOSTNAME_CALLABLE


def test_airflow_reads_the_broker_settings_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.celery.executors.default_celery import get_default_celery_config

    env = celery_env(redis_url="redis://r:6379/0", redis_prefix="mdx:", sql_alchemy_conn=CONN, concurrency=3)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = get_default_celery_config(None)
    assert config["broker_url"] == "redis://r:6379/0"
    assert config["broker_transport_options"]["global_keyprefix"] == "mdx:celery:"
    assert int(config["broker_transport_options"]["visibility_timeout"]) == 6 * 3600
    assert config["result_backend"] == "db+" + CONN


def test_workers_import_the_task_code_before_their_pool_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.celery.executors.celery_executor_utils import get_celery_configuration
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from market_data.airflow import celery_config

    env = celery_env(redis_url="redis://r:6379/0", redis_prefix="md:", sql_alchemy_conn=CONN, concurrency=3)
    monkeypatch.setenv(
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    )
    assert get_celery_configuration.__wrapped__() is celery_config.CELERY_CONFIG is DEFAULT_CELERY_CONFIG
    # the plugin's timetables (pandas, exchange_calendars) and every task body
    assert {"market_data.airflow.timetables", "market_data.airflow.sweep_tasks"} <= set(
        celery_config.PRELOADED
    )
    assert "market_data.airflow.backfill_tasks" in celery_config.PRELOADED


def test_each_worker_on_a_machine_has_its_own_node_name_and_one_serves_the_logs() -> None:
    first, second = worker_args(1, serve_logs=True), worker_args(2, serve_logs=False)
    assert first[:2] == ["celery", "worker"] and "--skip-serve-logs" not in first
    assert first[first.index("--celery-hostname") + 1] == "md-worker-1@%h"
    assert second[second.index("--celery-hostname") + 1] == "md-worker-2@%h" and "--skip-serve-logs" in second


def test_a_task_records_its_worker_s_name_or_else_the_machine_s(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv("MD_WORKER_NAME", "md-worker-2")
    assert task_hostname() == "md-worker-2"
    monkeypatch.setenv("MD_WORKER_NAME", " ")
    assert task_hostname() == socket.getfqdn()
    # what a task process sends the execution API, with the setting ./dev and compose give
    from airflow.sdk.api.client import get_hostname

    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", HOSTNAME_CALLABLE)
    monkeypatch.setenv("MD_WORKER_NAME", "md-worker-1")
    assert get_hostname() == "md-worker-1"


def test_celery_env_prints_exports_a_shell_can_evaluate() -> None:
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": CONN, "AIRFLOW__CORE__PARALLELISM": "16"}
    env.update(REDIS_URL="redis://127.0.0.1:6379/3", MARKET_DATA_REDIS_PREFIX="it's:")
    out = subprocess.run(
        [sys.executable, "-m", "market_data.cli", "celery-env", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shown = subprocess.run(
        [
            "bash",
            "-c",
            out + '\nprintf "%s\\n" "$AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"'
            ' "$AIRFLOW__CELERY__WORKER_CONCURRENCY" "$AIRFLOW__CELERY__BROKER_URL"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert shown[:3] == ["it's:celery:", "8", "redis://127.0.0.1:6379/3"]
    assert all(line.startswith("export AIRFLOW__") for line in out.splitlines())
    assert shlex.split(out.splitlines()[0])[0] == "export"


def test_celery_env_refuses_to_run_without_the_metadata_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    proc = subprocess.run(
        [sys.executable, "-m", "market_data.cli", "celery-env"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in proc.stderr


@pytest.mark.parametrize("count", ["two", "-1", ""])
def test_dev_up_refuses_a_worker_count_that_is_not_a_number(count: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",  # nothing runs if the check failed
        "MD_API_PORT": "1",
        "AIRFLOW_PORT": "1",
    }
    proc = subprocess.run(
        [str(ROOT / "dev"), "up", "--celery-workers", count],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"must be a number of workers, not '{count}'" in proc.stderr
