"""DAG hygiene: the folder parses cleanly, touches nothing while parsing, every DAG is tagged and retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_DAGS = {
    "md_sweep_t0",
    "md_sweep_t1",
    "md_sweep_t2",
    "md_backfill",
    "md_maintenance",
    "md_slo",
    "md_corporate_actions",
}


@pytest.fixture(scope="module")
def report() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    # An unreachable metadata DB: parsing must not need it.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql+psycopg2://nobody@192.0.2.1:1/none"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("parse_dags.py")), str(ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_import_errors(report: dict) -> None:
    assert report["import_errors"] == {}


def test_expected_dags_are_found(report: dict) -> None:
    assert EXPECTED_DAGS <= set(report["dags"])


def test_nothing_is_contacted_while_parsing(report: dict) -> None:
    assert report["attempts"] == []


def test_every_dag_has_tags_docs_and_retries(report: dict) -> None:
    for dag_id, info in report["dags"].items():
        assert info["tags"], f"{dag_id} has no tags"
        assert "market-data" in info["tags"], dag_id
        assert info["doc_md"], f"{dag_id} has no doc_md"
        assert info["catchup"] is False, dag_id
        for task_id, retries in info["retries"].items():
            assert retries >= 1, f"{dag_id}.{task_id} has no retries"
