"""Claiming queued jobs and grouping them into per-provider batches."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

import asyncpg
import msgspec

from market_data.policy.schema import Policy
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry

log = logging.getLogger(__name__)
OTHER = "_other"
"""Batch group of providers the DAG has no task (and pool) of its own for."""


class ClaimedJob(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    symbol: str
    interval: Interval
    start: datetime
    end: datetime
    tier: Tier
    exchange_mic: str
    source: str


class BackfillBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The unit of work of one mapped backfill task."""

    run_id: str
    batch: str
    """`<task group>:<map index>`: with run_id, names the jobs (backfill_jobs.batch) and the
    mapped task instance that runs them."""
    provider: str
    policy_version: int
    jobs: list[ClaimedJob]


def batch_key(group: str, map_index: int) -> str:
    return f"{group}:{map_index}"


async def release_expired_leases(conn: asyncpg.Connection) -> int:
    """Return running jobs whose lease expired (their worker died) to the queue."""
    rows = await conn.fetch(
        """UPDATE backfill_jobs SET status = 'queued', run_id = NULL, batch = NULL, lease_until = NULL,
                  last_error = 'lease expired: its worker stopped before finishing', updated_at = now()
           WHERE status = 'running' AND lease_until < now()
           RETURNING id"""
    )
    if rows:
        log.warning("%d backfill job(s) whose lease expired went back to the queue", len(rows))
    return len(rows)


async def claim_jobs(conn: asyncpg.Connection, run_id: str, limit: int, lease: timedelta) -> list[ClaimedJob]:
    """Claim up to `limit` queued jobs: most urgent priority first, then oldest."""
    rows = await conn.fetch(
        """WITH picked AS (
               SELECT id FROM backfill_jobs WHERE status = 'queued'
               ORDER BY priority, created_at, id
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
           UPDATE backfill_jobs j
              SET status = 'running', run_id = $2, lease_until = now() + $3::interval, updated_at = now(),
                  claimed_at = now()
             FROM picked
            WHERE j.id = picked.id
           RETURNING j.id, j.symbol, j.interval, j.start_ts, j.end_ts, j.tier, j.source, j.priority,
                     j.created_at,
                     (SELECT exchange_mic FROM symbol_universe u WHERE u.symbol = j.symbol)
                         AS exchange_mic""",
        limit,
        run_id,
        lease,
    )
    return [
        ClaimedJob(
            id=r["id"],
            symbol=r["symbol"],
            interval=Interval(r["interval"]),
            start=r["start_ts"],
            end=r["end_ts"],
            tier=Tier(r["tier"]),
            exchange_mic=r["exchange_mic"] or "XNYS",
            source=r["source"],
        )
        for r in sorted(rows, key=lambda r: (r["priority"], r["created_at"], r["id"]))
    ]


class _Route(msgspec.Struct, frozen=True):
    """Where the jobs of one (capability, tier, exchange) go this run."""

    provider: str | None
    kind: str
    """closed: a provider whose breaker is closed; probe: none is closed, but the best one is
    due for a probe (one job goes to it); down: every breaker is open (the jobs wait in the
    queue); none: no enabled provider serves it (the jobs are dead)."""
    others: tuple[str, ...] = ()


async def _route(registry: ProviderRegistry, ranked: list[tuple[str, float]]) -> _Route:
    """The provider a batch is pinned to: the best ranked one whose breaker is closed.

    `ranked` puts a provider that is due for a half-open probe first, so that the next call
    probes it. A backfill batch keeps its provider for every try, though: pinned to a provider
    whose breaker is still open, the whole batch would fail, burn its retries and go to the
    DLQ while another provider is healthy, or while an outage lasts. So when no breaker is
    closed the jobs wait in the queue, except one that probes a provider due for it.
    """
    names = tuple(name for name, _ in ranked)
    if not names:
        return _Route(None, "none")
    for name in names:
        if (await registry.store.breaker(name)).state == "closed":
            return _Route(name, "closed")
    if registry.probe_due(await registry.store.breaker(names[0])):
        return _Route(names[0], "probe", names)
    return _Route(None, "down", names)


async def plan_batches(
    conn: asyncpg.Connection,
    jobs: list[ClaimedJob],
    registry: ProviderRegistry,
    policy: Policy,
    *,
    run_id: str,
    policy_version: int,
    task_groups: list[str],
) -> dict[str, list[BackfillBatch]]:
    """Assign each job to the best provider now and split per provider into batches.

    Returns batches per task group (a provider name the DAG has a task for, or OTHER).
    Jobs no provider can serve are marked dead at once, with the reason. Jobs whose every
    provider has an open breaker go back to the queue (one of them probes a provider that is
    due for it), with the reason in last_error.
    """
    by_provider: dict[str, list[ClaimedJob]] = defaultdict(list)
    unservable: list[tuple[int, str]] = []
    waiting: list[tuple[int, str]] = []
    chosen: dict[tuple[str, Tier, str], _Route] = {}
    for job in jobs:
        capability = f"bars:{job.interval.value}"
        route_key = (capability, job.tier, job.exchange_mic)
        if route_key not in chosen:
            ranked = await registry.ranked(
                capability,
                policy.tiers[job.tier].providers if job.tier in policy.tiers else (),
                job.exchange_mic,
            )
            chosen[route_key] = await _route(registry, ranked)
        route = chosen[route_key]
        if route.kind == "none":
            unservable.append((job.id, f"no enabled provider serves {capability} on {job.exchange_mic}"))
            continue
        if route.kind == "down":
            names = ", ".join(route.others)
            waiting.append((job.id, f"waiting: every provider of {capability} has an open breaker ({names})"))
            continue
        if route.kind == "probe":  # this job probes; the route's other jobs wait for its outcome
            chosen[route_key] = _Route(None, "down", route.others)
        assert route.provider is not None
        by_provider[route.provider].append(job)
    out: dict[str, list[BackfillBatch]] = {g: [] for g in [*task_groups, OTHER]}
    assignments: list[tuple[int, str, str]] = []
    size = policy.backfill.batch_size
    for provider, pjobs in sorted(by_provider.items()):
        group = provider if provider in task_groups else OTHER
        for i in range(0, len(pjobs), size):
            key = batch_key(group, len(out[group]))
            chunk = pjobs[i : i + size]
            out[group].append(
                BackfillBatch(
                    run_id=run_id, batch=key, provider=provider, policy_version=policy_version, jobs=chunk
                )
            )
            assignments.extend((j.id, key, provider) for j in chunk)
    if assignments:
        await conn.execute(
            """UPDATE backfill_jobs j SET batch = a.batch, provider = a.provider, updated_at = now()
               FROM unnest($1::bigint[], $2::text[], $3::text[]) AS a(id, batch, provider)
               WHERE j.id = a.id""",
            [a[0] for a in assignments],
            [a[1] for a in assignments],
            [a[2] for a in assignments],
        )
    if unservable:
        await conn.execute(
            """UPDATE backfill_jobs j SET status = 'dead', last_error = u.reason, updated_at = now(),
                      finished_at = now()
               FROM unnest($1::bigint[], $2::text[]) AS u(id, reason) WHERE j.id = u.id""",
            [u[0] for u in unservable],
            [u[1] for u in unservable],
        )
        log.warning("%d backfill job(s) no provider can serve: dead", len(unservable))
    if waiting:
        await conn.execute(
            """UPDATE backfill_jobs j SET status = 'queued', run_id = NULL, batch = NULL, lease_until = NULL,
                      last_error = w.reason, updated_at = now()
               FROM unnest($1::bigint[], $2::text[]) AS w(id, reason) WHERE j.id = w.id""",
            [w[0] for w in waiting],
            [w[1] for w in waiting],
        )
        log.warning("%d backfill job(s) wait in the queue: %s", len(waiting), waiting[0][1])
    return out
