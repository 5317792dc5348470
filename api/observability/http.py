"""Request latency by route template (not raw path: one series per endpoint, whatever the URL)."""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from market_data.metrics import ApiMetrics


class RequestLatencyMiddleware(ASGIMiddleware):
    """Observes `http_request_duration_seconds{method, route, status}` for every HTTP request.

    Litestar runs it after routing, so `route` is the matched template (`/stocks/{symbol}/price`);
    exceptions are already turned into responses inside it, so `status` is what the client got.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, metrics: ApiMetrics) -> None:
        self.histogram = metrics.http_request_duration_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            route = scope.get("path_template") or "unmatched"
            self.histogram.labels(scope.get("method", "GET"), route, str(status)).observe(
                time.perf_counter() - start
            )
