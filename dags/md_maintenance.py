"""
### md_maintenance: housekeeping

Daily: deletes dead backfill jobs older than `retention.dead_jobs` (the DLQ's retention),
finished jobs, old quotes, SLO samples and rejected RLC messages by the policy's retention,
and creates the monthly `bars` and `quotes` partitions `retention.partitions_ahead` months
ahead (so new rows never land in the default partition).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from market_data.airflow import maintenance_tasks


@dag(
    dag_id="md_maintenance",
    schedule="15 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["market-data", "maintenance"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
)
def md_maintenance() -> None:
    @task
    def maintain() -> dict:
        return maintenance_tasks.maintain()

    maintain()


md_maintenance()
