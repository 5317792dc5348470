"""
### md_sweep_t0: T0 sweep

Every minute: plan the T0 symbols' jobs from the universe and their cursors, fetch them in
mapped batches through the provider registry, and store bars and quotes point-in-time safe
(cursors advance in the same transaction). Re-running a run asks for the same window and
adds no rows for bars already stored.

The active policy version is read once by `plan` and used by every batch of the run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from market_data.airflow import sweep_tasks


@dag(
    dag_id="md_sweep_t0",
    schedule="* * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    tags=["market-data", "sweep", "T0"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
)
def md_sweep_t0() -> None:
    @task
    def plan() -> list[dict]:
        return sweep_tasks.plan("T0")

    @task
    def sweep(batch: dict) -> dict:
        return sweep_tasks.sweep(batch)

    @task
    def report(results: list[dict]) -> dict:
        return sweep_tasks.report(list(results))

    report(sweep.expand(batch=plan()))


md_sweep_t0()
