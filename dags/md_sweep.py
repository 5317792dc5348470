"""
### md_sweep_t0 / md_sweep_t1 / md_sweep_t2: tier sweeps

Each run plans the tier's jobs (from the universe and the cursors, or from the RLC list when
the policy says `jobs.mode = "rlc"`), fetches them in mapped batches through the provider
registry, and stores bars and quotes point-in-time safe; cursors advance in the same
transaction. Gaps against the exchange calendar become backfill jobs for `md_backfill`; a batch that queued
any emits an event of the `md_backfill_queue` asset (through the `md_backfill_queued` alias),
which starts md_backfill at once instead of at its next cadence run.

**Grid**: each mapped batch is named after its provider, first and last symbol and size
(`synthetic AAPL..MSFT (250)`; the tier until a provider answered).

**Schedule**: the active policy's `bar_cadence` for the tier, only while the tier's markets
trade (daily tiers: after each session close); crypto pairs trade 24/7, so T0 runs at every
hour. A tier with no data yet (or a DAG that never ran) runs at once, day or night, at most
once per cadence. A policy reload changes the cadence from the next run.

**Policy**: `plan` reads the active policy version once; every batch of the run uses it, and
the version is stored with every bar and cursor written.

Each run also reads the tier's `revision_window` again, so a vendor's later correction of a
recent bar is stored as a new version. Re-running a run (Clear) asks for the same window and
adds no rows for bars already stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from market_data.airflow import sweep_tasks
from market_data.airflow.assets import BACKFILL_QUEUED
from market_data.airflow.grid import MAP_INDEX_TEMPLATE
from market_data.airflow.timetables import SessionCadenceTimetable
from market_data.records import Tier


def build_sweep_dag(tier: str):
    @dag(
        dag_id=f"md_sweep_{tier.lower()}",
        schedule=SessionCadenceTimetable.from_policy_file(Tier(tier)),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(minutes=30),
        tags=["market-data", "sweep", tier],
        default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
        doc_md=__doc__,
    )
    def sweep_dag() -> None:
        @task
        def plan() -> list[dict]:
            return sweep_tasks.plan(tier)

        @task(outlets=[BACKFILL_QUEUED], map_index_template=MAP_INDEX_TEMPLATE)
        def sweep(batch: dict) -> dict:
            return sweep_tasks.sweep(batch)

        @task(trigger_rule="all_done")
        def report(batches: list[dict], results: list[dict]) -> dict:
            return sweep_tasks.report(tier, batches, list(results))

        batches = plan()
        report(batches, sweep.expand(batch=batches))

    return sweep_dag()


for _tier in Tier:
    globals()[f"md_sweep_{_tier.lower()}"] = build_sweep_dag(_tier.value)
