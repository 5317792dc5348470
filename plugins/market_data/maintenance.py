"""Housekeeping by the policy's retention: purge old rows; create and compact partitions (`partitions`)."""

from __future__ import annotations

import logging

import asyncpg
import msgspec

from market_data.backfill.dlq import purge_dead
from market_data.partitions import PartitionReport, compact_due, ensure_partitions
from market_data.policy.schema import Policy

log = logging.getLogger(__name__)


class MaintenanceResult(msgspec.Struct, kw_only=True):
    dead_jobs_purged: int = 0
    done_jobs_purged: int = 0
    quotes_purged: int = 0
    slo_samples_purged: int = 0
    rejected_jobs_purged: int = 0
    partitions_created: dict[str, int] = {}
    partitions_compacted: dict[str, int] = {}
    """Bar partitions rewritten in primary-key order (market_data.partitions), with their rows."""
    partition_errors: dict[str, str] = {}


async def run_maintenance(conn: asyncpg.Connection, policy: Policy) -> MaintenanceResult:
    r = policy.retention
    out = MaintenanceResult()
    out.dead_jobs_purged = await purge_dead(conn, r.dead_jobs.delta)
    out.done_jobs_purged = int(
        (
            await conn.execute(
                "DELETE FROM backfill_jobs WHERE status = 'done' AND finished_at < now() - $1::interval",
                r.done_jobs.delta,
            )
        ).split()[-1]
    )
    out.quotes_purged = int(
        (await conn.execute("DELETE FROM quotes WHERE ts < now() - $1::interval", r.quotes.delta)).split()[-1]
    )
    out.slo_samples_purged = int(
        (
            await conn.execute(
                "DELETE FROM slo_samples WHERE sampled_at < now() - $1::interval", r.slo_samples.delta
            )
        ).split()[-1]
    )
    out.rejected_jobs_purged = int(
        (
            await conn.execute(
                "DELETE FROM rejected_jobs WHERE received_at < now() - $1::interval", r.rejected_jobs.delta
            )
        ).split()[-1]
    )
    partitions = PartitionReport()
    await ensure_partitions(conn, policy, partitions)
    await compact_due(conn, partitions)
    out.partitions_created = partitions.created
    out.partitions_compacted = partitions.compacted
    out.partition_errors = partitions.errors
    log.info("maintenance: %s", msgspec.json.encode(out).decode())
    return out
