"""GET /metrics: Prometheus exposition of the API's metrics (no token: Prometheus scrapes it)."""

from __future__ import annotations

from litestar import Controller, Request, Response, get

from api.observability.metrics import ApiMetrics


def api_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.api_metrics
    return metrics


class MetricsController(Controller):
    tags = ["system"]

    @get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        description=(
            "WebSocket clients, publish latency and drops, HTTP request latency by route, and the "
            "backfill queue depth and oldest age per tier and the active policy version, read from "
            "Postgres at scrape time (left out when Postgres does not answer); with a read replica, its "
            "lag and whether it serves reads. With several API processes, any process shows them all "
            "(counters and histograms summed, WebSocket clients of the live processes). Text exposition "
            "format."
        ),
        media_type="text/plain",
    )
    async def metrics(self, request: Request) -> Response[bytes]:
        m = api_metrics(request)
        # Litestar appends the charset to text/* itself
        media_type = m.content_type.replace("; charset=utf-8", "")
        return Response(await m.render(), media_type=media_type)
