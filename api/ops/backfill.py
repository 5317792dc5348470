"""/ops/backfill, the backfill DLQ and cursors (ops token required, audited)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.params import JSONBody, Parameter

from api.errors import NotFound
from api.ops import queries
from api.ops.audit import audit_detail, audited_refusal
from api.ops.schemas import OPS_ERRORS
from api.schemas import JSON_INT_MAX, REFUSED, TOO_LARGE, ErrorBody, ResponseModel, documented
from api.state import Resources
from api.stocks.params import StoredIntervalQuery, SymbolPath
from market_data.backfill.dlq import DeadJob, list_dead, purge_dead, requeue_dead
from market_data.backfill.manual import ManualBackfill, ManualBackfillRefused, submit_manual_backfill
from market_data.records import utcnow

NOT_FOUND = documented(ErrorBody, description="No such job / cursor")


class BackfillQueued(ResponseModel, kw_only=True):
    job_ids: list[int]
    inserted: int
    merged: int
    refused: dict[str, int]
    """Ranges refused per tier because its queue is at its cap."""


class DeadJobsPage(ResponseModel, kw_only=True):
    jobs: list[DeadJob]
    next_before_id: int | None
    """Pass as `before_id` for the next page; null on the last page."""


class RequeueResult(ResponseModel, kw_only=True):
    job_id: int
    status: str


class PurgeResult(ResponseModel, kw_only=True):
    purged: int
    older_than_days: int


class CursorOut(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    source: str
    last_ts: datetime
    updated_at: datetime
    policy_version: int | None


class BackfillOpsController(Controller):
    tags = ["ops"]

    @post(
        "/ops/backfill",
        operation_id="enqueueBackfill",
        summary="Queue a manual backfill",
        description=(
            "Queues [start, end) of `interval` bars for each symbol with the manual (most urgent) "
            "priority; md_backfill runs it at its next run. Same rules as md_backfill's trigger conf: "
            "a range within backfill.max_range and backfill.max_age, symbols of the active universe."
        ),
        status_code=202,
        responses={**OPS_ERRORS, 413: TOO_LARGE, 422: REFUSED},
    )
    async def enqueue(
        self, request: Request, resources: Resources, data: JSONBody[ManualBackfill]
    ) -> BackfillQueued:
        loaded = await resources.policy.get(resources.db)
        async with resources.db.acquire() as conn:
            result = await submit_manual_backfill(conn, data, loaded, utcnow(), source="api")
        if isinstance(result, ManualBackfillRefused):
            raise audited_refusal(request, result.problems)
        audit_detail(
            request, job_ids=result.job_ids, symbols=list(data.symbols), interval=data.interval.value
        )
        return BackfillQueued(
            job_ids=result.job_ids, inserted=result.inserted, merged=result.merged, refused=result.refused
        )

    @get(
        "/ops/dlq/backfills",
        operation_id="listDeadBackfills",
        summary="The backfill dead-letter queue",
        description="Dead jobs newest first, with their last error; page with `before_id`.",
        responses=OPS_ERRORS,
    )
    async def dead(
        self,
        resources: Resources,
        limit: Annotated[int, Parameter(ge=1, le=500, description="Jobs per page")] = 100,
        before_id: Annotated[
            int | None, Parameter(ge=1, le=JSON_INT_MAX, description="Jobs with a smaller id")
        ] = None,
    ) -> DeadJobsPage:
        async with resources.db.acquire() as conn:
            jobs = await list_dead(conn, limit, before_id)
        return DeadJobsPage(jobs=jobs, next_before_id=jobs[-1].id if len(jobs) == limit else None)

    @post(
        "/ops/dlq/backfills/requeue/{job_id:int}",
        operation_id="requeueDeadBackfill",
        summary="Put a dead backfill job back in the queue",
        status_code=200,
        responses={**OPS_ERRORS, 404: NOT_FOUND},
    )
    async def requeue(
        self,
        request: Request,
        resources: Resources,
        job_id: Annotated[int, Parameter(ge=1, le=JSON_INT_MAX, description="Dead job id")],
    ) -> RequeueResult:
        async with resources.db.acquire() as conn:
            if not await requeue_dead(conn, job_id):
                raise NotFound(f"job_id: {job_id} is not a dead backfill job", parameter="job_id")
        audit_detail(request, job_id=job_id)
        return RequeueResult(job_id=job_id, status="queued")

    @post(
        "/ops/dlq/backfills/purge",
        operation_id="purgeDeadBackfills",
        summary="Delete dead jobs older than N days",
        status_code=200,
        responses=OPS_ERRORS,
    )
    async def purge(
        self,
        request: Request,
        resources: Resources,
        older_than_days: Annotated[int, Parameter(ge=0, le=3650, description="Age in days")] = 14,
    ) -> PurgeResult:
        async with resources.db.acquire() as conn:
            purged = await purge_dead(conn, timedelta(days=older_than_days))
        audit_detail(request, purged=purged, older_than_days=older_than_days)
        return PurgeResult(purged=purged, older_than_days=older_than_days)

    @get(
        "/ops/cursor/{symbol:str}/{interval:str}/{source:str}",
        operation_id="getCursor",
        summary="Where ingestion of one symbol, interval and provider has got to",
        responses={
            **OPS_ERRORS,
            400: documented(ErrorBody, description="Malformed parameter"),
            404: NOT_FOUND,
        },
    )
    async def cursor(
        self,
        resources: Resources,
        symbol: SymbolPath,
        interval: StoredIntervalQuery,
        source: Annotated[str, Parameter(description="Provider name")],
    ) -> CursorOut:
        sym = symbol.upper()
        row = await queries.ingestion_cursor(resources.db, sym, interval, source)
        if row is None:
            raise NotFound(f"cursor: none for {sym} {interval.value} from {source}", parameter="source")
        return CursorOut(**row)
