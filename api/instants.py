"""Instants in query strings are ISO 8601 date-times, as documented, never bare numbers.

Litestar converts query parameters with msgspec's lax mode, which reads a number as Unix
epoch seconds: `end=7` would be 1970-01-01T00:00:07Z and `end=20261123` a day in August
1970, a silent trap for a caller who meant a date. This check (the app's `before_request`
hook) refuses a bare number in any datetime parameter of the route, naming the parameter,
before the conversion runs.
"""

from __future__ import annotations

import re
from datetime import datetime

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.errors import BadParameter

_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_OPT_KEY = "md_instant_parameters"
"""Where a route handler keeps the names of its datetime parameters (in its own `opt`)."""


def _instant_parameters(handler: BaseRouteHandler) -> tuple[str, ...]:
    # Kept on the handler itself: a cache keyed by id(handler) outlived the apps of a test
    # run, and a new handler at a recycled address read another one's names (none: unchecked).
    names: tuple[str, ...] | None = handler.opt.get(_OPT_KEY)
    if names is None:
        params = handler.parsed_fn_signature.parameters
        names = handler.opt[_OPT_KEY] = tuple(
            name
            for name, field in params.items()
            if field.is_subclass_of(datetime) or field.has_inner_subclass_of(datetime)
        )
    return names


def iso_instants_only(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: 400 for `?end=7` and the like (see the module docstring)."""
    for name in _instant_parameters(handler):
        # every value: a repeated parameter (`?since=x&since=5000`) is read from its last one
        for value in connection.query_params.getall(name, []):
            if not _NUMBER.fullmatch(value):
                continue
            raise BadParameter(
                f"{name}: expected an ISO 8601 date-time such as 2026-11-23T14:30:00Z, got {value[:24]!r}",
                parameter=name,
            )


async def refuse_numeric_instants(request: Request) -> None:
    """The app's `before_request` hook: `iso_instants_only` for every route, before parsing.

    Not registered as a guard: Litestar calls each guard with a copy of the route handler, a
    cost on every request, /price and /history included (README, Performance); as a hook it is
    a dictionary look-up for routes without datetime parameters.
    """
    iso_instants_only(request, request.route_handler)
