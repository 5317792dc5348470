"""Backfill requests: an accepted manual request as a resource whose status can be asked for.

`POST /ops/backfill` and a manual md_backfill trigger (`market_data.backfill.manual`) store one
request each, linked to the queued jobs that cover it. Enqueue coalesces ranges, so a request's
range may merge into a job queued earlier (a sweep's gap, another request) and a job may serve
several requests: the link table (`backfill_request_jobs`) says which; a job absorbed into
another by a later enqueue hands its links over.

A request's status is computed from its jobs whenever it is read:
- `queued`: every job is queued and none has finished;
- `running`: a job is running, or some finished while others wait;
- `done`: every job is done;
- `failed`: every job finished and at least one is dead (in the DLQ);
- `refused`: no job: every range was refused because its tier's queue was at its cap;
- `purged`: no job left: its dead jobs were purged from the DLQ.

`bars_written` is what the request's jobs stored; a job shared with another request counts
for both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import asyncpg
import msgspec

from market_data.records import Interval

if TYPE_CHECKING:
    from market_data.backfill.enqueue import EnqueueResult

RequestSource = Literal["manual", "api"]
JobStatus = Literal["queued", "running", "done", "dead"]
RequestStatus = Literal["queued", "running", "done", "failed", "refused", "purged"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "dead")
MAX_PAGE = 500
"""Most jobs or requests one listing returns."""


class BackfillJobView(msgspec.Struct, frozen=True, kw_only=True):
    """One backfill job as operators see it."""

    id: int
    symbol: str
    interval: str
    start: datetime
    end: datetime
    """Exclusive."""
    tier: str
    source: str
    """gap (a sweep found it), manual (a DAG trigger) or api (POST /ops/backfill)."""
    status: JobStatus
    priority: int
    provider: str | None
    attempts: int
    bars_inserted: int
    last_error: str | None
    run_id: str | None
    """The md_backfill run that claimed it last."""
    batch: str | None
    """`<task group>:<map index>` of the mapped task that ran it in that run."""
    created_at: datetime
    claimed_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    request_ids: list[int]
    """The backfill requests this job serves (empty for a gap of a sweep)."""


class JobCounts(msgspec.Struct, frozen=True, kw_only=True):
    queued: int = 0
    running: int = 0
    done: int = 0
    dead: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.dead


class RequestError(msgspec.Struct, frozen=True, kw_only=True):
    """The last error of one of a request's jobs (a dead job's reason, or why it waits)."""

    job_id: int
    symbol: str
    status: JobStatus
    error: str


class BackfillRequestView(msgspec.Struct, frozen=True, kw_only=True):
    request_id: int
    status: RequestStatus
    source: RequestSource
    actor: str
    """Who asked: the ops caller (X-Ops-Actor and token fingerprint) or `airflow:<run id>`."""
    symbols: list[str]
    interval: str
    start: datetime
    end: datetime
    dag_run_id: str | None
    """The md_backfill run a manual trigger created (null for POST /ops/backfill)."""
    policy_version: int | None
    created_at: datetime
    inserted: int
    """New jobs the request queued."""
    merged: int
    """Ranges merged into jobs that were queued already."""
    refused: dict[str, int]
    """Ranges refused per tier because its queue was at its cap."""
    job_counts: JobCounts
    bars_written: int
    errors: list[RequestError]
    jobs: list[BackfillJobView]
    """Every job of the request (empty in listings)."""


def request_status(counts: JobCounts, refused: dict[str, int]) -> RequestStatus:
    """The status of a request from its jobs (see the module docstring)."""
    if counts.total == 0:
        return "refused" if sum(refused.values()) else "purged"
    if counts.running or (counts.queued and (counts.done or counts.dead)):
        return "running"
    if counts.queued:
        return "queued"
    return "failed" if counts.dead else "done"


async def create_request(
    conn: asyncpg.Connection,
    *,
    symbols: list[str],
    interval: Interval,
    start: datetime,
    end: datetime,
    source: RequestSource,
    actor: str,
    dag_run_id: str | None,
    policy_version: int | None,
    enqueued: EnqueueResult,
) -> int:
    """Store an accepted request and link it to the jobs that cover it; returns its id."""
    request_id: int = await conn.fetchval(
        """INSERT INTO backfill_requests (source, actor, symbols, interval, start_ts, end_ts, dag_run_id,
                                          policy_version, inserted, merged, refused)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb) RETURNING id""",
        source,
        actor[:200],
        symbols,
        interval.value,
        start,
        end,
        dag_run_id,
        policy_version,
        enqueued.inserted,
        enqueued.merged,
        json.dumps(enqueued.refused),
    )
    if enqueued.job_ids:
        await conn.execute(
            """INSERT INTO backfill_request_jobs (request_id, job_id)
               SELECT $1, j FROM unnest($2::bigint[]) AS j ON CONFLICT DO NOTHING""",
            request_id,
            sorted(set(enqueued.job_ids)),
        )
    return request_id


async def hand_over_links(conn: asyncpg.Connection, absorbed_by: dict[int, int]) -> None:
    """Links of jobs about to be deleted (absorbed -> the job that absorbed them) move over."""
    if not absorbed_by:
        return
    await conn.execute(
        """INSERT INTO backfill_request_jobs (request_id, job_id)
           SELECT l.request_id, a.keep FROM backfill_request_jobs l
           JOIN unnest($1::bigint[], $2::bigint[]) AS a(absorbed, keep) ON l.job_id = a.absorbed
           ON CONFLICT DO NOTHING""",
        list(absorbed_by),
        list(absorbed_by.values()),
    )


_JOB_COLUMNS = """j.id, j.symbol, j.interval, j.start_ts AS start, j.end_ts AS end, j.tier, j.source,
    j.status, j.priority, j.provider, j.attempts, j.bars_inserted, j.last_error, j.run_id, j.batch,
    j.created_at, j.claimed_at, j.finished_at, j.updated_at,
    ARRAY(SELECT l.request_id FROM backfill_request_jobs l WHERE l.job_id = j.id ORDER BY 1) AS request_ids"""

_LIST_JOBS = f"""
SELECT {_JOB_COLUMNS} FROM backfill_jobs j
WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.symbol = $2)
  AND ($3::bigint IS NULL OR j.id < $3)
ORDER BY j.id DESC LIMIT $4"""

_REQUEST_JOBS = f"""
SELECT {_JOB_COLUMNS} FROM backfill_jobs j JOIN backfill_request_jobs r ON r.job_id = j.id
WHERE r.request_id = $1 ORDER BY j.symbol, j.id"""

_REQUEST_COLUMNS = """r.id, r.source, r.actor, r.symbols, r.interval, r.start_ts, r.end_ts, r.dag_run_id,
    r.policy_version, r.created_at, r.inserted, r.merged, r.refused::text AS refused"""

_REQUEST = f"SELECT {_REQUEST_COLUMNS} FROM backfill_requests r WHERE r.id = $1"

_RECENT_REQUESTS = f"""
SELECT {_REQUEST_COLUMNS}, c.queued, c.running, c.done, c.dead, c.bars_written
FROM backfill_requests r
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.status = 'queued') AS queued,
           count(*) FILTER (WHERE j.status = 'running') AS running,
           count(*) FILTER (WHERE j.status = 'done') AS done,
           count(*) FILTER (WHERE j.status = 'dead') AS dead,
           coalesce(sum(j.bars_inserted), 0) AS bars_written
    FROM backfill_request_jobs l JOIN backfill_jobs j ON j.id = l.job_id
    WHERE l.request_id = r.id) c
WHERE $1::bigint IS NULL OR r.id < $1
ORDER BY r.id DESC LIMIT $2"""


def _job(row: asyncpg.Record) -> BackfillJobView:
    return BackfillJobView(**{**dict(row), "request_ids": list(row["request_ids"])})


def _view(
    row: asyncpg.Record, counts: JobCounts, bars: int, jobs: list[BackfillJobView]
) -> BackfillRequestView:
    refused = {k: int(v) for k, v in json.loads(row["refused"] or "{}").items()}
    return BackfillRequestView(
        request_id=row["id"],
        status=request_status(counts, refused),
        source=row["source"],
        actor=row["actor"],
        symbols=list(row["symbols"]),
        interval=row["interval"],
        start=row["start_ts"],
        end=row["end_ts"],
        dag_run_id=row["dag_run_id"],
        policy_version=row["policy_version"],
        created_at=row["created_at"],
        inserted=row["inserted"],
        merged=row["merged"],
        refused=refused,
        job_counts=counts,
        bars_written=bars,
        errors=[
            RequestError(job_id=j.id, symbol=j.symbol, status=j.status, error=j.last_error)
            for j in jobs
            if j.last_error
        ],
        jobs=jobs,
    )


async def get_request(conn: asyncpg.Connection | asyncpg.Pool, request_id: int) -> BackfillRequestView | None:
    """A request with every job that serves it, or None when there is no such request."""
    row = await conn.fetchrow(_REQUEST, request_id)
    if row is None:
        return None
    jobs = [_job(r) for r in await conn.fetch(_REQUEST_JOBS, request_id)]
    by_status = {s: sum(1 for j in jobs if j.status == s) for s in JOB_STATUSES}
    return _view(row, JobCounts(**by_status), sum(j.bars_inserted for j in jobs), jobs)


async def recent_requests(
    conn: asyncpg.Connection | asyncpg.Pool, *, limit: int = 20, before_id: int | None = None
) -> list[BackfillRequestView]:
    """Requests newest first, with their job counts (not their jobs); page with `before_id`."""
    rows = await conn.fetch(_RECENT_REQUESTS, before_id, min(limit, MAX_PAGE))
    return [
        _view(r, JobCounts(**{s: int(r[s]) for s in JOB_STATUSES}), int(r["bars_written"]), []) for r in rows
    ]


async def list_jobs(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    status: JobStatus | None = None,
    symbol: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[BackfillJobView]:
    """Backfill jobs newest first, optionally of one status and one symbol; page with `before_id`."""
    rows = await conn.fetch(_LIST_JOBS, status, symbol, before_id, min(limit, MAX_PAGE))
    return [_job(r) for r in rows]
