"""
### md_backfill: drain the backfill queue

Every run (the policy's `backfill.cadence`, 5 minutes by default) claims up to
`backfill.claim_limit` queued jobs, most urgent first (manual, then T0, T1, T2; oldest first),
assigns each to the best provider now, and runs them as mapped batches: one mapped task per
provider (`backfill_<provider>`), each in the provider's **Airflow pool**, so the pool's
slots bound how many batches of a provider run at once. The registry's rate limiter holds
the provider's calls per minute. Bars go through the same point-in-time write path as sweeps;
ranges a provider answers with no data are recorded as confirmed empty.

**Retries and the DLQ**: a failing batch is retried with exponential backoff. After its last
retry, exactly that batch's unfinished jobs are marked `dead` with the last error: the DLQ
(`GET /ops/dlq/backfills`).

**To re-run a failed batch**: *Clear* its failed mapped task instance (Grid view ->
the `backfill_<provider>` task -> the failed map index -> Clear, or
`airflow tasks clear md_backfill -t backfill_<provider> -s START -e END -f -y`). The cleared
instance runs exactly the same jobs again; on success they leave the DLQ. Requeueing a job
instead: `POST /ops/dlq/backfills/requeue/{job_id}` (ops token).

**Schedule**: the policy's `backfill.cadence` (5 minutes by default), or at once when queued
jobs are announced by an event of the `md_backfill_queue` asset: a sweep batch that queued
gaps emits one, and so does the API after `POST /ops/backfill`.

**Manual backfill** (Trigger DAG w/ config, or the CLI): the `request` Param.

    airflow dags trigger md_backfill --conf '{"request": {"symbols": ["AAPL", "MSFT"],
        "interval": "1m", "start": "2026-11-20T14:30:00Z", "end": "2026-11-20T21:00:00Z"}}'

The request is checked when the run is created (the REST API, the UI form and the CLI alike):
a malformed one, a range beyond the active policy's `backfill.max_range` / `backfill.max_age`
or an unknown symbol is refused with `md_backfill conf refused: <every reason>` and no run is
made. The run's first task queues it as a backfill request (its id in the task log and XCom:
`GET /ops/backfills/{id}`, `./dev backfill status ID`); manual jobs get the top priority and run
in that run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, Param, dag, task

from market_data.airflow import backfill_tasks
from market_data.airflow.assets import BACKFILL_QUEUE
from market_data.airflow.backfill_params import REQUEST_PARAM, request_description, request_schema
from market_data.airflow.grid import MAP_INDEX_TEMPLATE
from market_data.airflow.timetables import BackfillTimetable
from market_data.backfill.claim import OTHER
from market_data.policy import parse_time_policy

GROUPS = backfill_tasks.task_groups()
RETRIES, RETRY_DELAY = backfill_tasks.retry_settings()


@dag(
    dag_id="md_backfill",
    schedule=AssetOrTimeSchedule(timetable=BackfillTimetable.from_policy_file(), assets=[BACKFILL_QUEUE]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    tags=["market-data", "backfill"],
    default_args={
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        REQUEST_PARAM: Param(
            None, description=request_description(parse_time_policy()), schema=request_schema()
        ),
    },
    doc_md=__doc__,
)
def md_backfill() -> None:
    @task
    def enqueue_manual() -> dict | None:
        return backfill_tasks.enqueue_request()

    @task
    def claim() -> dict[str, list[dict]]:
        return backfill_tasks.claim()

    @task
    def batches_of(claimed: dict, group: str) -> list[dict]:
        # Airflow maps only over a task's whole return value: one small select per provider
        return claimed.get(group, [])

    @task(on_failure_callback=backfill_tasks.on_batch_failure, map_index_template=MAP_INDEX_TEMPLATE)
    def run_batch(batch: dict) -> dict:
        return backfill_tasks.run_batch(batch)

    @task(trigger_rule="all_done", retries=1, retry_delay=timedelta(seconds=5))
    def report(claimed: dict, *results: list[dict]) -> dict:
        return backfill_tasks.report(claimed, list(results))

    claimed = claim()
    enqueue_manual() >> claimed
    mapped = [
        run_batch.override(task_id=f"{backfill_tasks.TASK_PREFIX}{name}", pool=pool).expand(
            batch=batches_of.override(task_id=f"batches_{name}")(claimed, name)
        )
        for name, pool in [*GROUPS, (OTHER, "default_pool")]
    ]
    report(claimed, *mapped)


md_backfill()
