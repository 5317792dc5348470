"""The dead-letter queue: backfill jobs whose batch exhausted its retries."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from market_data.metrics import task_metrics


class DeadJob(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    symbol: str
    interval: str
    start_ts: datetime
    end_ts: datetime
    tier: str
    source: str
    provider: str | None
    attempts: int
    last_error: str | None
    run_id: str | None
    batch: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, symbol, interval, start_ts, end_ts, tier, source, provider, attempts, last_error, run_id, batch, "
    "created_at, updated_at"
)


async def mark_batch_dead(conn: asyncpg.Connection, run_id: str, batch: str, error: str) -> int:
    """Every unfinished job of one batch goes to the DLQ with the last error."""
    rows = await conn.fetch(
        """UPDATE backfill_jobs SET status = 'dead', last_error = $3, lease_until = NULL, finished_at = now(),
                  updated_at = now()
           WHERE run_id = $1 AND batch = $2 AND status IN ('running', 'queued')
           RETURNING tier""",
        run_id,
        batch,
        error[:2000],
    )
    metrics = task_metrics()
    for tier in {r["tier"] for r in rows}:
        metrics.incr(
            "backfill_jobs_completed_total",
            {"tier": tier, "status": "dead"},
            sum(1 for r in rows if r["tier"] == tier),
        )
    return len(rows)


async def list_dead(conn: asyncpg.Connection, limit: int, before_id: int | None = None) -> list[DeadJob]:
    """Dead jobs, newest first; page with `before_id` = the last id of the previous page."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM backfill_jobs WHERE status = 'dead' AND ($2::bigint IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $1""",
        limit,
        before_id,
    )
    return [DeadJob(**dict(r)) for r in rows]


async def requeue_dead(conn: asyncpg.Connection, job_id: int) -> bool:
    """Put a dead job back in the queue (its age and last error are kept); False if it is not dead."""
    row = await conn.fetchrow(
        """UPDATE backfill_jobs SET status = 'queued', run_id = NULL, batch = NULL, lease_until = NULL,
                  attempts = 0, finished_at = NULL, updated_at = now()
           WHERE id = $1 AND status = 'dead' RETURNING id""",
        job_id,
    )
    return row is not None


async def purge_dead(conn: asyncpg.Connection, older_than: timedelta) -> int:
    """Delete dead jobs that have been dead longer than `older_than`."""
    rows = await conn.fetch(
        "DELETE FROM backfill_jobs WHERE status = 'dead' AND updated_at < now() - $1::interval RETURNING id",
        older_than,
    )
    return len(rows)
