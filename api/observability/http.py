"""Request latency by route template (not raw path: one series per endpoint, whatever the URL)."""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.observability.metrics import ApiMetrics


class ResponseStatus:
    """Wraps an ASGI `send` to remember the response's status (500 until one starts)."""

    def __init__(self, send: Send) -> None:
        self.status = 500
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


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
        response = ResponseStatus(send)
        try:
            await next_app(scope, receive, response.send)
        finally:
            route = scope.get("path_template") or "unmatched"
            self.histogram.labels(scope.get("method", "GET"), route, str(response.status)).observe(
                time.perf_counter() - start
            )
