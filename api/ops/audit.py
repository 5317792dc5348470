"""Audit trail: every /ops/* request (refused ones included) becomes a row of ops_audit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from litestar.connection import Request
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from api.errors import Refused
from api.observability.http import ResponseStatus
from api.ops.auth import ops_actor
from api.state import AppResources
from market_data.policy import Problem

log = logging.getLogger("api.ops.audit")


def audit_detail(request: Request, **detail: Any) -> None:
    """Attach facts about what an ops handler did (recorded with the request's audit row)."""
    request.scope.setdefault("state", {}).setdefault("ops_audit", {}).update(detail)


def audited_refusal(request: Request, problems: Iterable[Problem]) -> Refused:
    """A 422 refusal whose reasons are also recorded with the request's audit row."""
    refusal = Refused(problems)
    audit_detail(request, refused=[str(p) for p in refusal.problems])
    return refusal


class OpsAuditMiddleware(ASGIMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        response = ResponseStatus(send)
        try:
            await next_app(scope, receive, response.send)
        finally:
            await self._record(scope, response.status)

    @staticmethod
    async def _record(scope: Scope, status: int) -> None:
        request: Request = Request(scope)
        resources: AppResources = request.app.state.resources
        detail = scope.get("state", {}).get("ops_audit", {})
        client = request.client.host if request.client else None
        try:
            await resources.db.execute(
                """INSERT INTO ops_audit (actor, client, method, path, status, detail)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
                ops_actor(request),
                client,
                request.method,
                request.url.path,
                status,
                json.dumps(detail, default=str),
            )
        except Exception:
            log.exception("could not write the audit row of %s %s", request.method, request.url.path)
