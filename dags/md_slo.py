"""
### md_slo: continuity and freshness SLO sampling

Every 5 minutes, for each tier of the active policy and each of its bar intervals:

- **Continuity**: samples up to `slo.sample_size` active symbols (reproducible per run) and
  finds each one's largest gap in the last `slo.window` (at least the last 20 expected bars):
  the longest run of bars the exchange calendar expects, up to the symbol's newest stored
  bar, that are not stored, times the interval. Nights, weekends, holidays, early closes,
  lunch breaks and confirmed-empty ranges never count. A gap longer than
  `slo.gap_threshold_multiplier` x interval (2x by default) violates; the **violation rate**
  is the share of sampled symbols that violate (SLO: at most `slo.violation_rate_max`).
- **Freshness**: the ingestion lag of every active symbol, in trading time: completed expected
  bars after its newest cursor x interval (it does not grow while the market is closed);
  the worst symbol and the 95th percentile.
- **Backfill queue**: queued + running jobs of the tier and the age of the oldest.

- **Coverage**: the sampled symbols' expected bars in the window (ended by the run's instant),
  and of those the missing (neither stored nor confirmed empty) and the confirmed-empty ones.

Each run stores one `slo_samples` row per (tier, interval) with the policy version it used,
and sends `slo_gap_violation_rate{tier,interval}`, `slo_expected_bars`, `slo_missing_bars`,
`slo_confirmed_empty_bars{tier,interval}` (the Data quality dashboard),
`ingestion_lag_seconds{interval}` (worst tier) and `policy_version_info{version}` over statsd.
`GET /stats/slo` serves the rows.

The run measures at its data interval's end: re-running (Clear) a run measures the same
instant again and replaces its rows. Definitions in detail: `market_data/slo.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from market_data.airflow import slo_tasks


@dag(
    dag_id="md_slo",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    tags=["market-data", "slo"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def md_slo() -> None:
    @task(execution_timeout=timedelta(minutes=4))
    def sample() -> dict:
        return slo_tasks.sample()

    sample()


md_slo()
