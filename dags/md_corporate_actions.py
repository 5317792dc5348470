"""
### md_corporate_actions: splits, dividends, ticker changes and delistings, point in time

Daily at 04:30 UTC (after the US close): asks every enabled provider whose adapter reports
corporate actions (synthetic; Yahoo chart events; Alpaca corporate actions; Finnhub splits)
for the actions of the active equities with an ex-date from 30 days back to 90 days ahead
(from 2000-01-01 while none is stored), and stores each as a version with its provider and
the instant it was learned (`market_data/corporate_action_sync.py`). A re-delivered action
stores nothing; a revised or cancelled one is a new version; WebSocket clients following the
symbol get a `corporate_action` message. `/history?adjustment=` reads apply the actions known
at the read's `as_of`.

Trigger it by hand with a `request` ({"symbols": [...], "start": "YYYY-MM-DD", "end": ...});
Airflow checks its shape when the run is created.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from market_data.airflow import corporate_action_tasks
from market_data.airflow.corporate_action_tasks import REQUEST_DESCRIPTION, REQUEST_PARAM, request_schema


@dag(
    dag_id="md_corporate_actions",
    schedule="30 4 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    tags=["market-data", "corporate-actions"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={REQUEST_PARAM: Param(None, description=REQUEST_DESCRIPTION, schema=request_schema())},
    doc_md=__doc__,
)
def md_corporate_actions() -> None:
    @task(execution_timeout=timedelta(minutes=45))
    def sync() -> dict:
        return corporate_action_tasks.sync()

    sync()


md_corporate_actions()
