"""/ops/backfill and its requests, the job list, the backfill DLQ and cursors (ops token, audited)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import ResponseHeader
from litestar.params import JSONBody, Parameter

from api.errors import NotFound
from api.ops import queries
from api.ops.audit import audit_detail, audited_refusal
from api.ops.auth import ops_actor
from api.ops.schemas import OPS_ERRORS
from api.ops.wakeup import BackfillWakeup
from api.schemas import JSON_INT_MAX, REFUSED, TOO_LARGE, ErrorBody, ResponseModel, documented
from api.state import Resources
from api.stocks.params import SYMBOL_RE, StoredIntervalQuery, SymbolPath
from market_data.backfill.dlq import DeadJob, list_dead, purge_dead, requeue_dead
from market_data.backfill.manual import ManualBackfill, ManualBackfillRefused, submit_manual_backfill
from market_data.backfill.requests import (
    MAX_PAGE,
    BackfillJobView,
    BackfillRequestView,
    JobStatus,
    get_request,
    list_jobs,
)
from market_data.records import utcnow

NOT_FOUND = documented(ErrorBody, description="No such job / cursor")
REQUEST_NOT_FOUND = documented(ErrorBody, description="No such backfill request")
BAD_PARAMETER = documented(ErrorBody, description="Malformed parameter")


class BackfillQueued(ResponseModel, kw_only=True):
    request_id: int
    """The request's resource: GET /ops/backfills/{request_id} (also the Location header)."""
    job_ids: list[int]
    inserted: int
    merged: int
    refused: dict[str, int]
    """Ranges refused per tier because its queue is at its cap."""


class BackfillJobsPage(ResponseModel, kw_only=True):
    jobs: list[BackfillJobView]
    next_before_id: int | None
    """Pass as `before_id` for the next page; null on the last page."""


def request_location(request_id: int) -> str:
    return f"/ops/backfills/{request_id}"


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
            "priority, as a backfill request whose progress `GET /ops/backfills/{request_id}` shows "
            "(the `Location` header). Same rules as md_backfill's trigger conf: a range within "
            "backfill.max_range and backfill.max_age, symbols of the active universe. After answering, "
            "the API posts an Airflow asset event that starts md_backfill at once; if Airflow cannot be "
            "reached the request stays accepted and md_backfill's cadence runs it."
        ),
        status_code=202,
        response_headers=[
            ResponseHeader(
                name="Location",
                description="The request's resource, /ops/backfills/{request_id}",
                documentation_only=True,
            )
        ],
        responses={**OPS_ERRORS, 413: TOO_LARGE, 422: REFUSED},
    )
    async def enqueue(
        self, request: Request, resources: Resources, data: JSONBody[ManualBackfill]
    ) -> Response[BackfillQueued]:
        loaded = await resources.policy.get(resources.db)
        async with resources.db.acquire() as conn:
            result = await submit_manual_backfill(
                conn, data, loaded, utcnow(), source="api", actor=ops_actor(request)
            )
        if isinstance(result, ManualBackfillRefused):
            raise audited_refusal(request, result.problems)
        queued = result.enqueued
        audit_detail(
            request,
            request_id=result.request_id,
            job_ids=queued.job_ids,
            symbols=list(data.symbols),
            interval=data.interval.value,
        )
        wakeup: BackfillWakeup = request.app.state.backfill_wakeup
        return Response(
            BackfillQueued(
                request_id=result.request_id,
                job_ids=queued.job_ids,
                inserted=queued.inserted,
                merged=queued.merged,
                refused=queued.refused,
            ),
            status_code=202,
            headers={"Location": request_location(result.request_id)},
            background=BackgroundTask(wakeup.wake, result.request_id) if queued.job_ids else None,
        )

    @get(
        "/ops/backfills/{request_id:int}",
        operation_id="getBackfillRequest",
        summary="How far a backfill request has got",
        description=(
            "The request (who asked, symbols, range), its status (queued, running, done, failed: a job "
            "is in the DLQ; refused: every range hit its tier's queue cap; purged: its dead jobs were "
            "purged), its jobs by status, the bars they wrote and their errors, and every job. Enqueue "
            "merges ranges with queued jobs, so a job may serve several requests (`request_ids`)."
        ),
        responses={**OPS_ERRORS, 400: BAD_PARAMETER, 404: REQUEST_NOT_FOUND},
    )
    async def backfill_request(
        self,
        resources: Resources,
        request_id: Annotated[int, Parameter(ge=1, le=JSON_INT_MAX, description="Backfill request id")],
    ) -> BackfillRequestView:
        found = await get_request(resources.db, request_id)
        if found is None:
            raise NotFound(f"request_id: no backfill request {request_id}", parameter="request_id")
        return found

    @get(
        "/ops/backfills",
        operation_id="listBackfillJobs",
        summary="Backfill jobs, newest first",
        description=(
            "Queued, running, done and dead jobs, optionally of one status and one symbol, with the "
            "requests each serves; page with `before_id`."
        ),
        responses={**OPS_ERRORS, 400: BAD_PARAMETER},
    )
    async def backfill_jobs(
        self,
        resources: Resources,
        status: Annotated[JobStatus | None, Parameter(description="Only jobs in this status")] = None,
        symbol: Annotated[
            str | None, Parameter(description="Only jobs of this ticker", max_length=15, pattern=SYMBOL_RE)
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Jobs per page")] = 100,
        before_id: Annotated[
            int | None, Parameter(ge=1, le=JSON_INT_MAX, description="Jobs with a smaller id")
        ] = None,
    ) -> BackfillJobsPage:
        jobs = await list_jobs(
            resources.db,
            status=status,
            symbol=symbol.upper() if symbol else None,
            limit=limit,
            before_id=before_id,
        )
        return BackfillJobsPage(jobs=jobs, next_before_id=jobs[-1].id if len(jobs) == limit else None)

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
