"""One exception tree for the API, mapped to HTTP once.

Every error body has the same shape: {"status_code", "detail", "parameter"?}; the detail
names the offending parameter. No handler lets a stack trace out.
"""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR

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


def validation_handler(_: Request, exc: ValidationException) -> Response:
    """Litestar's parameter validation, reworded so the detail names the parameter."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    key = first.get("key")
    message = first.get("message") or exc.detail
    detail = f"{key}: {message}" if key else str(message)
    return Response(_body(400, detail, key), status_code=400, media_type=MediaType.JSON)


def http_handler(_: Request, exc: HTTPException) -> Response:
    detail = exc.detail if not isinstance(exc, NotFoundException) else (exc.detail or "not found")
    return Response(
        _body(exc.status_code, str(detail)),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=exc.headers,
    )


def internal_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        _body(500, "internal error"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_handler,
    Exception: internal_handler,
}
