"""Bodies of the sweep DAGs' tasks (the DAG files only wire these together)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from market_data.airflow.connections import market_data_dsn
from market_data.db import connect
from market_data.ingest.sweep import SweepBatch, SweepResult, plan_sweep, run_sweep_batch, sweep_now
from market_data.policy import load_active_policy, load_policy_version
from market_data.records import Tier, utcnow
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings

log = logging.getLogger(__name__)


def _run_end() -> Any:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    return ctx.get("data_interval_end") or ctx.get("logical_date")


def plan(tier: str) -> list[dict[str, Any]]:
    """Read the active policy once for this run and split the tier's jobs into batches."""
    now = sweep_now(_run_end(), utcnow())

    async def go() -> list[SweepBatch]:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            log.info("policy version %d (%s) in effect for this run", loaded.version, loaded.source)
            return await plan_sweep(conn, loaded, Tier(tier), now)
        finally:
            await conn.close()

    return [msgspec.to_builtins(b) for b in asyncio.run(go())]


def sweep(batch: dict[str, Any]) -> dict[str, Any]:
    """Fetch and store one batch with the policy version its run started with."""
    b = msgspec.convert(batch, SweepBatch)

    async def go() -> SweepResult:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_policy_version(conn, b.policy_version, get_settings().policy_file)
            registry = ProviderRegistry(loaded.policy)
            try:
                return await run_sweep_batch(conn, loaded.policy, b, registry)
            finally:
                await registry.aclose()
        finally:
            await conn.close()

    result = asyncio.run(go())
    log.info("sweep batch done: %s", msgspec.json.encode(result).decode())
    for label, error in result.failed.items():
        log.warning("not fetched: %s: %s", label, error)
    return msgspec.to_builtins(result)


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of a sweep run (visible as the report task's XCom and log)."""
    totals: dict[str, Any] = {
        "batches": 0,
        "jobs": 0,
        "bars_received": 0,
        "bars_inserted": 0,
        "quotes_inserted": 0,
        "failed_requests": 0,
    }
    for r in results or []:
        totals["batches"] += 1
        for key in ("jobs", "bars_received", "bars_inserted", "quotes_inserted"):
            totals[key] += r.get(key, 0)
        totals["failed_requests"] += len(r.get("failed", {}))
    log.info("sweep totals: %s", totals)
    return totals
