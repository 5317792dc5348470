"""Body of the md_slo DAG's task (the DAG file only schedules it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from market_data.airflow.connections import market_data_dsn
from market_data.db import connect
from market_data.metrics import task_metrics
from market_data.policy import load_active_policy
from market_data.records import run_instant
from market_data.settings import get_settings
from market_data.slo import sample_slo
from market_data.slo_samples import SloSample, emit_slo_gauges

log = logging.getLogger(__name__)


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def sample() -> dict[str, Any]:
    """Measure the SLOs at the run's instant with the active policy, store and emit them.

    The instant is the run's data interval end (never in the future), so re-running a run
    measures the same instant and replaces its rows.
    """
    ctx = _context()
    now = run_instant(ctx.get("data_interval_end") or ctx.get("logical_date"))

    async def go() -> tuple[int, list[SloSample]]:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            log.info("policy version %d (%s) in effect for this run", loaded.version, loaded.source)
            return loaded.version, await sample_slo(conn, loaded.policy, now, policy_version=loaded.version)
        finally:
            await conn.close()

    version, samples = asyncio.run(go())
    emit_slo_gauges(samples, task_metrics(), policy_version=version)
    return {
        "sampled_at": now.isoformat(),
        "policy_version": version,
        "samples": [
            {
                "tier": s.tier,
                "interval": s.interval,
                "sampled_symbols": s.sampled_symbols,
                "violating_symbols": s.violating_symbols,
                "violation_rate": s.violation_rate,
                "max_gap_seconds": s.max_gap_seconds,
                "lag_seconds": s.lag_seconds,
                "queue_depth": s.queue_depth,
                "oldest_age_seconds": s.oldest_age_seconds,
            }
            for s in samples
        ],
    }
