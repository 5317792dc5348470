"""Running one backfill batch: fetch each job's range, store it, record what is empty, finish.

Each job is fetched in chunks no longer than the provider allows per request, written
through the same point-in-time path as sweeps (cursors untouched), and then compared with
the calendar: expected bars the provider did not return in a range it answered for are
minutes without trades, recorded as confirmed empty so they are never queued or counted
again. Only bars that ended at least `backfill.settle` ago are confirmed so: a vendor's
"no data" for the last minutes may only mean it has not published them yet, and the job
goes back to the queue, narrowed to what is still missing, for a later run. A job is
marked done in its own transaction as soon as it is stored, so a retry of the batch only
redoes what was not finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import asyncpg
import msgspec

from market_data.backfill.claim import BackfillBatch, ClaimedJob
from market_data.gaps import Window, find_gaps
from market_data.ingest.pit_write import write_bars
from market_data.metrics import task_metrics
from market_data.policy.schema import Policy
from market_data.providers.base import BarRequest
from market_data.records import utcnow
from market_data.registry import ProviderRegistry

log = logging.getLogger(__name__)
_TICK = timedelta(microseconds=1)


class BatchOutcome(msgspec.Struct, kw_only=True):
    batch: str
    provider: str
    jobs: int = 0
    done: int = 0
    skipped: int = 0
    """Jobs of the batch already done (a re-run) or taken back by the queue."""
    deferred: int = 0
    """Jobs back in the queue: the provider had no data for minutes too recent to confirm empty."""
    bars_received: int = 0
    bars_inserted: int = 0
    empty_ranges: int = 0
    providers: dict[str, int] = {}
    seconds: float = 0.0


def limit_wait(policy: Policy) -> float:
    """How long a backfill call waits for room in its provider's rate limit: up to the lease.

    A batch is pinned to its provider (no failover), so a call that gave up sooner would only
    fail the batch, and Airflow's retry would come back later into the same full window: batch
    tries fail, the drain takes longer, and a long backlog ends in the DLQ (README, Performance).
    """
    return policy.backfill.lease.seconds


def chunks(job: ClaimedJob, max_range: timedelta | None) -> list[tuple[datetime, datetime]]:
    """[start, end) split into pieces no longer than `max_range` (None: one piece)."""
    if max_range is None or job.end - job.start <= max_range:
        return [(job.start, job.end)]
    out, t = [], job.start
    while t < job.end:
        out.append((t, min(t + max_range, job.end)))
        t += max_range
    return out


async def _take_jobs(conn: asyncpg.Connection, batch: BackfillBatch, lease: timedelta) -> set[int]:
    """The batch's jobs still to do (running, or dead from an earlier try), leased again."""
    rows = await conn.fetch(
        """UPDATE backfill_jobs
              SET status = 'running', lease_until = now() + $3::interval, attempts = attempts + 1,
                  updated_at = now()
           WHERE run_id = $1 AND batch = $2 AND status IN ('running', 'dead')
           RETURNING id""",
        batch.run_id,
        batch.batch,
        lease,
    )
    return {r["id"] for r in rows}


async def _record_error(conn: asyncpg.Connection, batch: BackfillBatch, error: str) -> None:
    await conn.execute(
        """UPDATE backfill_jobs SET last_error = $3, updated_at = now()
           WHERE run_id = $1 AND batch = $2 AND status = 'running'""",
        batch.run_id,
        batch.batch,
        error[:2000],
    )


async def run_backfill_batch(
    pool: asyncpg.Pool,
    policy: Policy,
    batch: BackfillBatch,
    registry: ProviderRegistry,
    *,
    try_number: int = 1,
    now: datetime | None = None,
) -> BatchOutcome:
    """Run the batch's unfinished jobs; raises (after recording the error) if one fails.

    Args:
        now: the clock `backfill.settle` is measured against (default: the wall clock).
    """
    started = time.monotonic()
    settled_before = (now or utcnow()) - policy.backfill.settle.delta
    outcome = BatchOutcome(batch=batch.batch, provider=batch.provider, jobs=len(batch.jobs))
    async with pool.acquire() as conn:
        run_row = await conn.fetchval(
            """INSERT INTO backfill_batch_runs (run_id, batch, provider, try_number, job_ids)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            batch.run_id,
            batch.batch,
            batch.provider,
            try_number,
            [j.id for j in batch.jobs],
        )
        todo = await _take_jobs(conn, batch, policy.backfill.lease.delta)
    jobs = [j for j in batch.jobs if j.id in todo]
    outcome.skipped = len(batch.jobs) - len(jobs)
    providers: dict[str, int] = {}
    metrics = task_metrics()
    limit = asyncio.Semaphore(
        policy.providers[batch.provider].max_concurrency if batch.provider in policy.providers else 4
    )

    async def one(job: ClaimedJob) -> None:
        async with limit:
            adapter = registry.adapters.get(batch.provider)
            max_range = adapter.capabilities.max_range.get(job.interval) if adapter else None
            bars = []
            for start, end in chunks(job, max_range):
                request = BarRequest(
                    symbols=(job.symbol,),
                    exchange_mic=job.exchange_mic,
                    interval=job.interval,
                    start=start,
                    end=end,
                )
                got = await registry.fetch_bars(request, preferred=[batch.provider])
                providers[got.provider] = providers.get(got.provider, 0) + 1
                bars.extend(got.value)
            async with pool.acquire() as conn:
                written = await write_bars(
                    conn, bars, policy_version=batch.policy_version, advance_cursors=False
                )
                empty = await find_gaps(
                    conn,
                    [
                        Window(
                            symbol=job.symbol,
                            exchange_mic=job.exchange_mic,
                            interval=job.interval,
                            after=job.start - _TICK,
                            until=job.end - _TICK,
                        )
                    ],
                )
                # "no data" is trusted once the bars have settled; a run of missing bars that
                # reaches past that point stays missing, and the job waits for a later run
                unsettled = [g for g in empty if g.end > settled_before]
                empty = [g for g in empty if g.end <= settled_before]
                async with conn.transaction():
                    if empty:
                        await conn.executemany(
                            """INSERT INTO confirmed_empty_ranges
                                   (symbol, interval, start_ts, end_ts, provider)
                               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                            [(g.symbol, g.interval.value, g.start, g.end, batch.provider) for g in empty],
                        )
                    if unsettled:
                        await conn.execute(
                            """UPDATE backfill_jobs SET status = 'queued', start_ts = $2, lease_until = NULL,
                                      run_id = NULL, batch = NULL, updated_at = now(),
                                      bars_inserted = bars_inserted + $4,
                                      last_error = 'the provider had no data yet for ' || $3
                               WHERE id = $1 AND status = 'running'""",
                            job.id,
                            min(g.start for g in unsettled),
                            ", ".join(f"{g.start:%Y-%m-%d %H:%M}..{g.end:%H:%M}" for g in unsettled[:3]),
                            written.inserted,
                        )
                    else:
                        await conn.execute(
                            """UPDATE backfill_jobs SET status = 'done', finished_at = now(),
                                      lease_until = NULL, last_error = NULL, updated_at = now(),
                                      bars_inserted = bars_inserted + $2
                               WHERE id = $1 AND status = 'running'""",
                            job.id,
                            written.inserted,
                        )
            outcome.bars_received += written.received
            outcome.bars_inserted += written.inserted
            outcome.empty_ranges += len(empty)
            if unsettled:
                outcome.deferred += 1
                log.info(
                    "backfill job %d (%s %s): no data yet for %d recent range(s); back in the queue",
                    job.id,
                    job.symbol,
                    job.interval.value,
                    len(unsettled),
                )
                return
            outcome.done += 1
            metrics.incr("backfill_jobs_completed_total", {"tier": job.tier.value, "status": "done"})
            metrics.incr("jobs_processed_total", {"type": "backfill", "provider": batch.provider})

    try:
        # a failing job cancels its siblings and waits for them (their probes are released)
        async with asyncio.TaskGroup() as group:
            for j in jobs:
                group.create_task(one(j))
    except ExceptionGroup as failures:
        exc = failures.exceptions[0]  # the first job's failure is the batch's error (and the DLQ's)
        async with pool.acquire() as conn:
            await _record_error(conn, batch, f"{type(exc).__name__}: {exc}")
            await conn.execute(
                "UPDATE backfill_batch_runs SET finished_at = clock_timestamp(), outcome = $2 WHERE id = $1",
                run_row,
                f"failed: {type(exc).__name__}",
            )
        raise exc from failures
    outcome.providers = providers
    outcome.seconds = round(time.monotonic() - started, 3)
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE backfill_batch_runs
                  SET finished_at = clock_timestamp(), outcome = 'done', jobs_done = $2,
                      bars_inserted = $3, empty_ranges = $4
                WHERE id = $1""",
            run_row,
            outcome.done,
            outcome.bars_inserted,
            outcome.empty_ranges,
        )
    return outcome
