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

**Manual backfill** (Trigger DAG w/ config, or the CLI):

    airflow dags trigger md_backfill --conf '{"symbols": ["AAPL", "MSFT"], "interval": "1m",
        "start": "2026-11-20T14:30:00Z", "end": "2026-11-20T21:00:00Z"}'

Malformed conf (symbol, interval, timestamp format) is refused at trigger time; a range
beyond the policy's `backfill.max_range` / `backfill.max_age` or an unknown symbol fails the
run's first task with every reason. Manual jobs get the top priority and run in that run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from market_data.airflow import backfill_tasks
from market_data.airflow.timetables import BackfillTimetable
from market_data.backfill.claim import OTHER
from market_data.backfill.manual import ISO_WITH_OFFSET, MAX_SYMBOLS
from market_data.records import SYMBOL_PATTERN, Interval

GROUPS = backfill_tasks.task_groups()
RETRIES, RETRY_DELAY = backfill_tasks.retry_settings()


@dag(
    dag_id="md_backfill",
    schedule=BackfillTimetable.from_policy_file(),
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
        "symbols": Param(
            [],
            type="array",
            items={"type": "string", "pattern": SYMBOL_PATTERN},
            maxItems=MAX_SYMBOLS,
            description="Tickers to backfill; empty: just drain the queue",
        ),
        "interval": Param(
            "1m", type="string", enum=[iv.value for iv in Interval], description="Bar interval"
        ),
        "start": Param(
            None,
            type=["null", "string"],
            pattern=ISO_WITH_OFFSET,
            format="date-time",
            description="Inclusive start, ISO 8601 with offset (e.g. 2026-11-20T14:30:00Z)",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            pattern=ISO_WITH_OFFSET,
            format="date-time",
            description="Exclusive end, ISO 8601 with offset",
        ),
    },
    doc_md=__doc__,
)
def md_backfill() -> None:
    @task
    def enqueue_manual() -> list[int]:
        return backfill_tasks.enqueue_from_params()

    @task
    def claim() -> dict[str, list[dict]]:
        return backfill_tasks.claim()

    @task
    def batches_of(claimed: dict, group: str) -> list[dict]:
        # Airflow maps only over a task's whole return value: one small select per provider
        return claimed.get(group, [])

    @task(on_failure_callback=backfill_tasks.on_batch_failure)
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
