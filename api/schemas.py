"""Response base and the shared error schema (for the OpenAPI page)."""

from __future__ import annotations

import msgspec


class ResponseModel(msgspec.Struct, kw_only=True):
    """Base of every response body."""


class ErrorBody(ResponseModel, kw_only=True):
    status_code: int
    detail: str
    parameter: str | None = None
