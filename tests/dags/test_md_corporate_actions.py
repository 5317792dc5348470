"""md_corporate_actions under dag.test(): the providers' history once, nothing new on a re-run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from market_data import db
from market_data.providers.synthetic_history import synthetic_actions
from tests.conftest import truncate_data

LOGICAL = datetime(2026, 11, 24, 4, 30, tzinfo=UTC)


async def stored(dsn: str) -> list[dict]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT action_key, provider, as_of FROM corporate_actions ORDER BY action_key"
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


def test_md_corporate_actions_stores_the_history_once_and_a_rerun_adds_nothing(dagbag, md_dsn: str) -> None:
    asyncio.run(truncate_data(md_dsn))
    dag = dagbag.get_dag("md_corporate_actions")
    assert set(dag.tags) >= {"market-data", "corporate-actions"}

    before = datetime.now(UTC)
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    rows = asyncio.run(stored(md_dsn))
    # both synthetic providers of the default policy report the history; the second adds nothing
    assert len(rows) == len(synthetic_actions("synthetic"))
    assert {r["provider"] for r in rows} == {"synthetic"}
    assert all(r["as_of"] >= before for r in rows)  # learned when the task ran, not at the logical date

    rerun = dag.test(logical_date=LOGICAL, run_after=LOGICAL)
    assert rerun.state == "success"
    assert asyncio.run(stored(md_dsn)) == rows


def test_a_manual_request_of_unknown_shape_is_refused_when_the_run_is_created(dagbag, md_dsn: str) -> None:
    from airflow.exceptions import ParamValidationError

    dag = dagbag.get_dag("md_corporate_actions")
    with pytest.raises(ParamValidationError):
        dag.test(logical_date=LOGICAL, run_conf={"request": {"start": "yesterday"}})
    with pytest.raises(ParamValidationError):
        dag.test(logical_date=LOGICAL, run_conf={"request": {"symbols": ["AAPL"], "until": "2026-01-01"}})
