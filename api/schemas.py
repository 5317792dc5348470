"""Response base, the shared error schema and documented responses (for the OpenAPI page)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

INT4_MAX = 2**31 - 1
"""Largest Postgres `integer` (policy versions): the bound of such ids taken from requests."""
JSON_INT_MAX = 2**53 - 1
"""Largest integer every JSON client reads exactly: the bound of `bigint` ids taken from requests."""


class ResponseModel(msgspec.Struct, kw_only=True):
    """Base of every response body."""


class ErrorBody(ResponseModel, kw_only=True):
    status_code: int
    detail: str
    parameter: str | None = None


def documented(model: Any, description: str) -> ResponseSpec:
    """A documented response of `model`.

    Without Litestar's generated examples: they are random per process (two API processes
    would serve different documents) and read as nonsense (`status_code: 9361`).
    """
    return ResponseSpec(model, description=description, generate_examples=False)


UNAVAILABLE = documented(
    ErrorBody,
    description=(
        "Postgres or Redis is unavailable (down, restarting, out of connections); "
        "retry after the `Retry-After` header's seconds"
    ),
)
"""The 503 of `api.errors.unavailable_handler`: every operation that reads Postgres or Redis."""
