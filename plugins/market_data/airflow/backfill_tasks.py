"""Bodies of md_backfill's tasks and its failure callback (the DAG file only wires them)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec

from market_data.airflow.backfill_params import REQUEST_PARAM
from market_data.airflow.connections import market_data_dsn, redis_url
from market_data.airflow.grid import batch_label, set_label
from market_data.backfill.claim import (
    OTHER,
    BackfillBatch,
    batch_key,
    claim_jobs,
    plan_batches,
    release_expired_leases,
)
from market_data.backfill.dlq import mark_batch_dead
from market_data.backfill.execute import BatchOutcome, limit_wait, run_backfill_batch
from market_data.backfill.manual import (
    ManualBackfill,
    ManualBackfillRefused,
    submit_manual_backfill,
    trigger_refusal,
)
from market_data.db import connect
from market_data.policy import LoadedPolicy, load_active_policy, load_policy_version, parse_time_policy
from market_data.records import utcnow
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings

log = logging.getLogger(__name__)
TASK_PREFIX = "backfill_"


class BackfillIncomplete(RuntimeError):
    """Some batches of the run failed (after their retries): their jobs are in the DLQ."""


def task_groups() -> list[tuple[str, str]]:
    """(provider, pool) for every provider of the policy file: one mapped task each.

    Read from the file at parse time (no database); a provider added later by a reload gets
    its batches run by the `_other` task in the default pool until the DAG is parsed again.
    """
    policy = parse_time_policy()
    return [(name, cfg.pool_name(name)) for name, cfg in sorted(policy.providers.items())]


def retry_settings() -> tuple[int, timedelta]:
    """(retries, first retry delay) of backfill batches, from the policy file (parse time)."""
    backfill = parse_time_policy().backfill
    return backfill.retries, backfill.retry_delay.delta


def _refuse(message: str) -> Exception:
    """A refusal that no retry can fix: the task fails at once (no retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def _run_id(ctx: Any) -> str:
    dag_run = ctx.get("dag_run")
    return str(getattr(dag_run, "run_id", None) or ctx.get("run_id"))


def enqueue_request() -> dict[str, Any] | None:
    """A manual trigger's `request` (symbols, interval, start, end): queued first, as a backfill request.

    The Param's schema refused malformed requests and ones the active policy refused when the
    run was created (market_data.airflow.backfill_params); the policy is checked again here, as
    it may have changed since, and a refusal fails the run with the same message.
    """
    started = time.monotonic()
    ctx = _context()
    request = (ctx.get("params") or {}).get(REQUEST_PARAM)
    if not request:
        log.info(
            "enqueue_manual: no manual request (the run drains the queue), %.2f s", time.monotonic() - started
        )
        return None
    try:
        req = msgspec.convert(request, ManualBackfill, strict=False)
    except msgspec.ValidationError as exc:
        raise _refuse(trigger_refusal(exc)) from exc
    run_id = _run_id(ctx)

    async def go() -> dict[str, Any]:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            result = await submit_manual_backfill(
                conn, req, loaded, utcnow(), source="manual", actor=f"airflow:{run_id}", dag_run_id=run_id
            )
            if isinstance(result, ManualBackfillRefused):
                raise _refuse(trigger_refusal(result))
            queued = result.enqueued
            log.info(
                "enqueue_manual: backfill request %d (GET /ops/backfills/%d): %d job(s) queued, %d range(s) "
                "merged into queued ones, %d refused at a tier cap; symbols %s, policy version %d, %.2f s",
                result.request_id,
                result.request_id,
                queued.inserted,
                queued.merged,
                queued.refused_total,
                batch_label(str(req.interval.value), list(req.symbols)),
                loaded.version,
                time.monotonic() - started,
            )
            return {"request_id": result.request_id, "job_ids": queued.job_ids}
        finally:
            await conn.close()

    return asyncio.run(go())


def claim() -> dict[str, list[dict[str, Any]]]:
    """Release expired leases, claim the run's jobs and split them into per-provider batches."""
    started = time.monotonic()
    ctx = _context()
    run_id = _run_id(ctx)
    groups = [name for name, _ in task_groups()]

    async def go() -> dict[str, list[BackfillBatch]]:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            log.info("policy version %d (%s) in effect for this run", loaded.version, loaded.source)
            await release_expired_leases(conn)
            jobs = await claim_jobs(
                conn, run_id, loaded.policy.backfill.claim_limit, loaded.policy.backfill.lease.delta
            )
            registry = ProviderRegistry.shared(
                loaded.policy, msgspec.structs.replace(get_settings(), redis_url=redis_url())
            )
            try:
                batches = await plan_batches(
                    conn,
                    jobs,
                    registry,
                    loaded.policy,
                    run_id=run_id,
                    policy_version=loaded.version,
                    task_groups=groups,
                )
            finally:
                await registry.aclose()
            log.info(
                "claim: %d job(s) in %d batch(es), per provider %s, %.2f s",
                len(jobs),
                sum(len(b) for b in batches.values()),
                {g: len(b) for g, b in batches.items() if b} or "nothing queued",
                time.monotonic() - started,
            )
            return batches
        finally:
            await conn.close()

    out = asyncio.run(go())
    return {group: [msgspec.to_builtins(b) for b in batches] for group, batches in out.items()}


def run_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Fetch, store and finish one batch (retried by Airflow; the DLQ after the last try)."""
    b = msgspec.convert(batch, BackfillBatch)
    ctx = _context()
    label = batch_label(b.provider, [j.symbol for j in b.jobs])
    set_label(ctx, label)
    ti = ctx.get("ti")
    try_number = int(getattr(ti, "try_number", 1) or 1)

    async def go() -> BatchOutcome:
        loaded = await _policy(b.policy_version)
        limit = (
            loaded.policy.providers[b.provider].max_concurrency
            if b.provider in loaded.policy.providers
            else 4
        )
        pool = await asyncpg.create_pool(market_data_dsn(), min_size=1, max_size=limit + 1)
        registry = ProviderRegistry.shared(
            loaded.policy,
            msgspec.structs.replace(get_settings(), redis_url=redis_url()),
            limit_max_wait=limit_wait(loaded.policy),
        )
        try:
            return await run_backfill_batch(pool, loaded.policy, b, registry, try_number=try_number)
        finally:
            await registry.aclose()
            await pool.close()

    outcome = asyncio.run(go())
    log.info(
        "backfill batch %s [%s]: %d job(s) (%d done, %d deferred, %d skipped), %d bars received "
        "(%d new), %d empty range(s), provider %s, %.2f s",
        b.batch,
        label,
        outcome.jobs,
        outcome.done,
        outcome.deferred,
        outcome.skipped,
        outcome.bars_received,
        outcome.bars_inserted,
        outcome.empty_ranges,
        ", ".join(f"{p} ({n} calls)" for p, n in sorted(outcome.providers.items())) or b.provider,
        outcome.seconds,
    )
    return msgspec.to_builtins(outcome)


async def _policy(version: int) -> LoadedPolicy:
    conn = await connect(market_data_dsn())
    try:
        return await load_policy_version(conn, version, get_settings().policy_file)
    finally:
        await conn.close()


def on_batch_failure(context: Any) -> None:
    """After a batch's last retry: exactly its unfinished jobs go to the DLQ with the last error."""
    ti = context.get("ti")
    task_id = str(getattr(ti, "task_id", ""))
    group = task_id.removeprefix(TASK_PREFIX) or OTHER
    map_index = int(getattr(ti, "map_index", -1))
    run_id = _run_id(context)
    error = context.get("exception")
    message = f"{type(error).__name__}: {error}" if error else "batch failed after its retries"

    async def go() -> int:
        conn = await connect(market_data_dsn())
        try:
            return await mark_batch_dead(conn, run_id, batch_key(group, map_index), message)
        finally:
            await conn.close()

    dead = asyncio.run(go())
    log.error(
        "backfill batch %s of %s failed for good: %d job(s) in the DLQ (%s)",
        batch_key(group, map_index),
        run_id,
        dead,
        message,
    )


def report(
    claimed: dict[str, list[dict[str, Any]]] | None, results: list[list[dict[str, Any]] | None]
) -> dict[str, Any]:
    """Totals of the run; fails the run when a batch failed (its jobs are then in the DLQ)."""
    if claimed is None:
        raise BackfillIncomplete("nothing was claimed: an earlier task of this run failed (see its log)")
    planned = sum(len(v or []) for v in claimed.values())
    done = [r for group in results for r in (group or []) if r]
    totals: dict[str, Any] = {"batches": planned, "succeeded": len(done)}
    for key in ("jobs", "done", "skipped", "bars_received", "bars_inserted", "empty_ranges"):
        totals[key] = sum(r.get(key, 0) for r in done)
    log.info(
        "report: %d of %d batch(es) succeeded, %d job(s) (%d done), %d bars received (%d new): %s",
        totals["succeeded"],
        planned,
        totals["jobs"],
        totals["done"],
        totals["bars_received"],
        totals["bars_inserted"],
        totals,
    )
    if len(done) < planned:
        raise BackfillIncomplete(
            f"{planned - len(done)} of {planned} batches failed; their jobs are in the DLQ. Clear the failed "
            "mapped task instances to run exactly those jobs again, or requeue them with the ops API."
        )
    return totals
