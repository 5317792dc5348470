"""Response base, the shared error schemas and documented responses (for the OpenAPI page)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from market_data.policy import Problem

INT4_MAX = 2**31 - 1
"""Largest Postgres `integer` (policy versions): the bound of such ids taken from requests."""
JSON_INT_MAX = 2**53 - 1
"""Largest integer every JSON client reads exactly: the bound of `bigint` ids taken from requests."""


class ResponseModel(msgspec.Struct, kw_only=True):
    """Base of every response body."""


def quantity(value: float) -> float:
    """A volume or size as responses show it: whole numbers as integers (an equity's `1205461`,
    as before volumes could be fractional), fractions as stored (a crypto pair's `0.01`)."""
    return int(value) if value.is_integer() else value


def optional_quantity(value: float | None) -> float | None:
    return None if value is None else quantity(value)


class ErrorBody(ResponseModel, kw_only=True):
    status_code: int
    detail: str
    parameter: str | None = None


class ProblemOut(ResponseModel, kw_only=True):
    path: str
    reason: str


class ValidationReport(ResponseModel, kw_only=True):
    """The body of a 422 refusal (every problem at once), and of /ops/validate's 200 (ok)."""

    ok: bool
    problems: list[ProblemOut]

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> ValidationReport:
        out = [ProblemOut(path=p.path, reason=p.reason) for p in problems]
        return cls(ok=not out, problems=out)


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
REFUSED = documented(ValidationReport, description="The candidate is refused; every problem is listed")
"""The 422 of `api.errors.Refused`."""
TOO_LARGE = documented(ErrorBody, description="The body is over the API's 1 MiB limit")
