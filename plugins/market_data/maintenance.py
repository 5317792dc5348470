"""Housekeeping by the policy's retention: purge old rows, create partitions ahead of time."""

from __future__ import annotations

import logging

import asyncpg
import msgspec

from market_data.backfill.dlq import purge_dead
from market_data.policy.schema import Policy

log = logging.getLogger(__name__)


_ENSURE_MONTH = """
SELECT md_ensure_month_partitions($1, (date_trunc('month', now()) + make_interval(months => $2))::date, 1)"""


class MaintenanceResult(msgspec.Struct, kw_only=True):
    dead_jobs_purged: int = 0
    done_jobs_purged: int = 0
    quotes_purged: int = 0
    slo_samples_purged: int = 0
    rejected_jobs_purged: int = 0
    partitions_created: dict[str, int] = {}
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
    # bars: every month a backfill may still write (backfill.max_age back) and partitions_ahead
    # months ahead, so no bar lands in the unpruned default partition; quotes: ahead only (a
    # quote older than retention.quotes is purged anyway). One month per statement: a month
    # whose rows already sit in the default partition fails alone.
    months_back = {"bars": int(policy.backfill.max_age.seconds // (31 * 86_400)) + 1, "quotes": 0}
    for table, back in months_back.items():
        created = 0
        for offset in range(-back, r.partitions_ahead + 1):
            try:
                created += await conn.fetchval(_ENSURE_MONTH, table, offset)
            except asyncpg.PostgresError as exc:
                # e.g. rows of that month already sit in the default partition
                out.partition_errors[f"{table}:{offset:+d}"] = str(exc)
                log.error("could not create the %s partition %+d months from now: %s", table, offset, exc)
        out.partitions_created[table] = created
    log.info("maintenance: %s", msgspec.json.encode(out).decode())
    return out
