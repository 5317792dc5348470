"""One exception tree for the API, mapped to HTTP once.

Every error body has the same shape: {"status_code", "detail", "parameter"?}; the detail
names the offending parameter. A well-formed request the rules refuse (a policy candidate,
a backfill range) is `Refused`: 422 with every problem (`ValidationReport`). No handler lets
a stack trace out.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable

import asyncpg
import redis.exceptions
from litestar import MediaType, Request, Response
from litestar.datastructures.headers import Accept
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.middleware import ASGIMiddleware
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from api.ops.auth import REFUSAL, has_ops_token, is_ops_path
from api.schemas import ValidationReport
from market_data.bar_reads import ReadRefused
from market_data.db import is_broken_connection
from market_data.policy import Problem

log = logging.getLogger("api.errors")


class ApiError(Exception):
    status_code = HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, *, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter


class BadParameter(ApiError):
    """400: a parameter is malformed or out of range."""


class NotFound(ApiError):
    """404: unknown symbol, job, cursor."""

    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Refused(Exception):
    """422: the request is well-formed, but the rules refuse it; `problems` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def _body(status: int, detail: str, parameter: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"status_code": status, "detail": detail}
    if parameter:
        body["parameter"] = parameter
    return body


def api_error_handler(_: Request, exc: ApiError) -> Response:
    return Response(
        _body(exc.status_code, exc.detail, exc.parameter),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
    )


def read_refused_handler(_: Request, exc: ReadRefused) -> Response:
    """A bar read the service cannot answer as asked (a timeframe no stored interval builds, ...)."""
    return Response(_body(400, exc.detail, exc.parameter), status_code=400, media_type=MediaType.JSON)


def refused_handler(_: Request, exc: Refused) -> Response:
    return Response(ValidationReport.of(exc.problems), status_code=422, media_type=MediaType.JSON)


# Litestar's wording when a required parameter is absent (it sets no `extra` then).
_MISSING = re.compile(r"^Missing required (\w+) parameter (['\"])(.+?)\2")


def _allowed_values(request: Request, key: str) -> str:
    """ "; allowed: a, b" for an enumerated parameter of the request's handler, else ""."""
    try:
        param = request.route_handler.parsed_fn_signature.parameters.get(key)
    except AttributeError:
        return ""
    if param is None or not param.is_subclass_of(enum.Enum):
        return ""
    return "; allowed: " + ", ".join(str(m.value) for m in param.annotation)


def validation_handler(request: Request, exc: ValidationException) -> Response:
    """Litestar's parameter validation, reworded so the detail names the parameter (and, for
    an enumerated one, what it allows)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    key = first.get("key")
    message = first.get("message") or exc.detail
    missing = _MISSING.match(str(exc.detail)) if not key else None
    if missing:
        key, message = missing.group(3), f"missing required {missing.group(1)} parameter"
    if key and str(message).startswith("Invalid enum value"):
        message = f"{message}{_allowed_values(request, key)}"
    detail = f"{key}: {message}" if key else str(message)
    return Response(_body(400, detail, key), status_code=400, media_type=MediaType.JSON)


def http_handler(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in (404, 405) and is_ops_path(request.url.path) and not has_ops_token(request):
        # routing answers before the ops guard runs: without a valid token every /ops/* request
        # gets the same 401, so a caller cannot tell which paths or ids exist
        exc = NotAuthorizedException(detail=REFUSAL, headers={"WWW-Authenticate": "Bearer"})
    detail = exc.detail if not isinstance(exc, NotFoundException) else (exc.detail or "not found")
    return Response(
        _body(exc.status_code, str(detail)),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=exc.headers,
    )


UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable (ConnectionError and the pool's TimeoutError too)
    asyncpg.PostgresConnectionError,  # the connection broke
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory or disk
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""A dependency of the request is down or full: the client may retry; nothing is wrong with it."""
RETRY_AFTER_SECONDS = 2


def unavailable_handler(request: Request, exc: Exception) -> Response:
    """503 with Retry-After: Postgres or Redis did not serve the request (down, restarting, full)."""
    what = "Redis" if isinstance(exc, redis.exceptions.RedisError) else "the database"
    log.warning(
        "%s %s: %s unavailable: %s: %s", request.method, request.url.path, what, type(exc).__name__, exc
    )
    return Response(
        _body(503, f"{what} is unavailable ({type(exc).__name__}); retry in a few seconds"),
        status_code=503,
        media_type=MediaType.JSON,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def internal_client_handler(request: Request, exc: Exception) -> Response:
    """asyncpg's catch-all client error: 503 when it is a broken connection, else a 500."""
    if is_broken_connection(exc):
        return unavailable_handler(request, exc)
    return internal_handler(request, exc)


def internal_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        _body(500, "internal error"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    ReadRefused: read_refused_handler,
    Refused: refused_handler,
    ValidationException: validation_handler,
    HTTPException: http_handler,
    **dict.fromkeys(UNAVAILABLE_ERRORS, unavailable_handler),
    asyncpg.exceptions.InternalClientError: internal_client_handler,
    Exception: internal_handler,
}


class AcceptHeaderGuard(ASGIMiddleware):
    """A malformed Accept header (`q=1e999`, `q=nan`, ...) reads as `*/*` instead of raising.

    Litestar parses Accept lazily (`request.accept`) and lets float and int conversion errors
    escape, which would become a 500 wherever a handler negotiates. Parsing it here once and
    caching a safe value in the scope state keeps every handler on the happy path.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"accept" and b"q=" in value.lower():
                try:
                    Accept(value.decode("latin-1"))
                except Exception:
                    ScopeState.from_scope(scope).accept = Accept("*/*")
                break
        await next_app(scope, receive, send)
