"""Bodies of the sweep DAGs' tasks (the DAG files only wire these together)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis

from market_data.airflow.assets import BACKFILL_QUEUE, BACKFILL_QUEUED
from market_data.airflow.connections import market_data_dsn, redis_url
from market_data.airflow.grid import batch_label, providers_text, set_label
from market_data.db import connect
from market_data.ingest.rlc import finish_rlc_run
from market_data.ingest.sweep import SweepBatch, SweepResult, plan_sweep, run_sweep_batch
from market_data.jobs import Job
from market_data.metrics import task_metrics
from market_data.policy import load_active_policy, load_policy_version
from market_data.records import Interval, Tier, run_instant
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings

log = logging.getLogger(__name__)


# -- the XCom form of a sweep batch ----------------------------------------------------------
class JobGroup(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Jobs that differ only in their symbol: how a batch's jobs travel between tasks."""

    symbols: list[str]
    kind: Literal["bars", "quotes"]
    interval: Interval | None = None
    start: datetime | None = None
    end: datetime | None = None
    exchange_mic: str | None = None
    tier: Tier | None = None
    provider: str | None = None
    id: str | None = None


class SweepBatchWire(msgspec.Struct, frozen=True, kw_only=True):
    """A SweepBatch as the plan task returns it (XCom): its jobs grouped by all but the symbol.

    Every mapped task pulls the plan's whole return value, so its size is paid once per batch:
    10,000 one-minute jobs are 1.6 MB as a list of jobs and about 0.1 MB grouped.
    """

    tier: Tier
    policy_version: int
    now: datetime
    groups: list[JobGroup]


def batch_to_wire(batch: SweepBatch) -> SweepBatchWire:
    """Group a batch's jobs by everything but the symbol (order kept within each group)."""
    groups: dict[Job, list[str]] = {}
    for job in batch.jobs:
        groups.setdefault(msgspec.structs.replace(job, symbol=""), []).append(job.symbol)
    return SweepBatchWire(
        tier=batch.tier,
        policy_version=batch.policy_version,
        now=batch.now,
        groups=[
            JobGroup(symbols=symbols, **{f: getattr(key, f) for f in key.__struct_fields__ if f != "symbol"})
            for key, symbols in groups.items()
        ],
    )


def batch_from_wire(wire: SweepBatchWire) -> SweepBatch:
    """The batch again: the same jobs, group after group (requests group them the same way)."""
    jobs = [
        Job(symbol=symbol, **{f: getattr(g, f) for f in g.__struct_fields__ if f != "symbols"})
        for g in wire.groups
        for symbol in g.symbols
    ]
    return SweepBatch(tier=wire.tier, policy_version=wire.policy_version, now=wire.now, jobs=jobs)


TOTAL_KEYS = (
    "jobs",
    "requests",
    "bars_received",
    "bars_inserted",
    "quotes_inserted",
    "gaps_found",
    "gap_bars",
    "backfills_queued",
    "backfills_refused",
)


class SweepIncomplete(RuntimeError):
    """Some batches of the run failed (after their retries)."""


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def _run_id(ctx: Any) -> str:
    dag_run = ctx.get("dag_run")
    return str(getattr(dag_run, "run_id", None) or ctx.get("run_id") or "manual")


def plan(tier: str) -> list[dict[str, Any]]:
    """Read the active policy once for this run and split the tier's jobs into batches."""
    started = time.monotonic()
    ctx = _context()
    now = run_instant(ctx.get("data_interval_end") or ctx.get("logical_date"))

    async def go() -> list[SweepBatch]:
        conn = await connect(market_data_dsn())
        redis = aioredis.from_url(redis_url(), socket_timeout=5, socket_connect_timeout=5)
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            log.info("policy version %d (%s) in effect for this run", loaded.version, loaded.source)
            task_metrics().gauge("policy_version_info", {"version": loaded.version}, 1)
            return await plan_sweep(conn, loaded, Tier(tier), now, redis=redis, run_id=_run_id(ctx))
        finally:
            await redis.aclose()
            await conn.close()

    batches = asyncio.run(go())
    log.info(
        "plan %s: %d job(s) in %d batch(es), %.2f s",
        tier,
        sum(len(b.jobs) for b in batches),
        len(batches),
        time.monotonic() - started,
    )
    return [msgspec.to_builtins(batch_to_wire(b)) for b in batches]


def _batch(batch: dict[str, Any]) -> SweepBatch:
    """A planned batch from XCom: grouped jobs, or a plain job list (runs planned before)."""
    if "groups" in batch:
        return batch_from_wire(msgspec.convert(batch, SweepBatchWire))
    return msgspec.convert(batch, SweepBatch)


def sweep(batch: dict[str, Any]) -> dict[str, Any]:
    """Fetch and store one batch with the policy version its run started with.

    When it queued backfill jobs it emits an event of the backfill-queue asset (through its
    AssetAlias outlet), which starts md_backfill at once.
    """
    b = _batch(batch)
    ctx = _context()
    symbols = [j.symbol for j in b.jobs]
    set_label(ctx, batch_label(b.tier.value, symbols))  # the provider is known once it answered

    async def go() -> SweepResult:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_policy_version(conn, b.policy_version, get_settings().policy_file)
            settings = msgspec.structs.replace(get_settings(), redis_url=redis_url())
            registry = ProviderRegistry.shared(loaded.policy, settings)
            if registry.unavailable:
                log.warning("providers not in use: %s", registry.unavailable)
            try:
                return await run_sweep_batch(conn, loaded.policy, b, registry)
            finally:
                await registry.aclose()
        finally:
            await conn.close()

    result = asyncio.run(go())
    providers = providers_text(result.providers, b.tier.value)
    label = batch_label(providers, symbols)
    set_label(ctx, label)
    for name, error in result.failed.items():
        log.warning("not fetched: %s: %s", name, error)
    if result.backfills_queued:
        ctx["outlet_events"][BACKFILL_QUEUED].add(
            BACKFILL_QUEUE, extra={"tier": b.tier.value, "ranges": result.backfills_queued}
        )
    log.info(
        "sweep batch [%s]: %d job(s), %d request(s) (%d failed), %d bars received (%d new), %d quotes new, "
        "%d gap(s) (%d bars), %d backfill range(s) queued%s, provider %s, %.2f s",
        label,
        result.jobs,
        result.requests,
        len(result.failed),
        result.bars_received,
        result.bars_inserted,
        result.quotes_inserted,
        result.gaps_found,
        result.gap_bars,
        result.backfills_queued,
        " (md_backfill woken)" if result.backfills_queued else "",
        providers,
        result.seconds,
    )
    return msgspec.to_builtins(result)


def report(
    tier: str, batches: list[dict[str, Any]] | None, results: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Totals of a sweep run; ends an RLC run (gives its messages back if a batch failed).

    Runs even when batches failed, and then fails itself so the run shows as failed.
    """
    planned = list(batches or [])
    done = [r for r in (results or []) if r]
    totals: dict[str, Any] = {"batches": len(planned), "succeeded": len(done)}
    for key in TOTAL_KEYS:
        totals[key] = sum(r.get(key, 0) for r in done)
    totals["failed_requests"] = sum(len(r.get("failed", {})) for r in done)
    providers: dict[str, int] = {}
    for r in done:
        for name, n in r.get("providers", {}).items():
            providers[name] = providers.get(name, 0) + n
    totals["providers"] = providers
    succeeded = len(done) == len(planned)
    if planned:
        version = planned[0]["policy_version"]

        async def finish() -> int:
            conn = await connect(market_data_dsn())
            redis = aioredis.from_url(redis_url(), socket_timeout=5, socket_connect_timeout=5)
            try:
                loaded = await load_policy_version(conn, version, get_settings().policy_file)
                if loaded.policy.jobs.mode != "rlc":
                    return 0
                return await finish_rlc_run(
                    redis, loaded.policy, Tier(tier), _run_id(_context()), succeeded=succeeded
                )
            finally:
                await redis.aclose()
                await conn.close()

        totals["rlc_returned"] = asyncio.run(finish())
    log.info("sweep totals: %s", totals)
    if not succeeded:
        raise SweepIncomplete(f"{len(planned) - len(done)} of {len(planned)} batches failed; see their logs")
    return totals
