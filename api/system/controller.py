"""Service info and health."""

from __future__ import annotations

from litestar import Controller, Request, Response, get
from litestar.routes import WebSocketRoute

from api.schemas import ResponseModel, documented
from api.state import Resources
from api.system.ready import ReadyReport, dependency_checks, readiness

SERVICE = "market-data"
VERSION = "0.1.0"


class ServiceInfo(ResponseModel, kw_only=True):
    service: str
    version: str
    docs: str
    openapi: str
    endpoints: list[str]
    websockets: list[str]
    """WebSocket paths (not in the OpenAPI document); the protocol is in the README."""


class HealthReport(ResponseModel, kw_only=True):
    status: str
    checks: dict[str, str]


class SystemController(Controller):
    tags = ["system"]

    @get("/", operation_id="serviceInfo", summary="Service information")
    async def info(self, request: Request) -> ServiceInfo:
        paths = sorted(request.app.openapi_schema.paths or {})
        return ServiceInfo(
            service=SERVICE,
            version=VERSION,
            docs="/schema",
            openapi="/schema/openapi.json",
            endpoints=paths,
            websockets=sorted(r.path_format for r in request.app.routes if isinstance(r, WebSocketRoute)),
        )

    @get(
        "/health",
        operation_id="health",
        summary="Postgres and Redis reachability",
        description="200 when both answer; 503 naming the part that does not.",
        responses={503: documented(HealthReport, description="A dependency is down")},
    )
    async def health(self, resources: Resources) -> Response[HealthReport]:
        checks = await dependency_checks(resources)
        ok = all(v == "ok" for v in checks.values())
        return Response(
            HealthReport(status="ok" if ok else "unhealthy", checks=checks),
            status_code=200 if ok else 503,
        )

    @get(
        "/ready",
        operation_id="ready",
        summary="Readiness: dependencies, live feed and sweep freshness",
        description=(
            "200 when Postgres and Redis answer, the live feed LISTENs, and the newest sweep "
            "(`ingestion_cursors.updated_at`) is younger than the policy's `slo.lag_critical`. "
            "While the swept markets are closed an older sweep is expected: reported in `checks.sweep`, "
            "still ready (24/7 crypto pairs never close). Before the first sweep has stored bars "
            "(about a minute after the first start, at any hour) `checks.sweep` is `pending`. "
            "503 otherwise; `not_ready` names the failed checks. With a read replica "
            "(`DATABASE_READ_URL`), `checks.replica` and `replica` give its lag and whether it serves "
            "reads; a replica that is down or behind leaves the API ready (the primary serves its reads)."
        ),
        responses={503: documented(ReadyReport, description="Not ready; `not_ready` names why")},
    )
    async def ready(self, request: Request, resources: Resources) -> Response[ReadyReport]:
        report, ok = await readiness(resources, getattr(request.app.state, "ws_hub", None))
        return Response(report, status_code=200 if ok else 503)
