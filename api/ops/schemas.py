"""Responses every ops call documents (the guard's 401, a dependency's 503)."""

from __future__ import annotations

from api.schemas import UNAVAILABLE, ErrorBody, documented

UNAUTHORIZED = documented(ErrorBody, description="Missing or wrong ops token")
OPS_ERRORS = {401: UNAUTHORIZED, 503: UNAVAILABLE}
"""What every ops call may answer besides its own errors."""
