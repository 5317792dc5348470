"""Bearer-token guard of /ops/*.

The token is compared in constant time. Every refusal is the same 401 whatever the path,
so an unauthenticated caller learns nothing about which resources exist.
"""

from __future__ import annotations

import hashlib
import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from api.state import AppResources

ACTOR_HEADER = "x-ops-actor"


def token_fingerprint(token: str) -> str:
    """A short, non-reversible label of a token (for audit rows; never the token itself)."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:10]


def bearer_token(connection: ASGIConnection) -> str:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


REFUSAL = "a valid ops bearer token is required"


def has_ops_token(connection: ASGIConnection) -> bool:
    resources: AppResources = connection.app.state.resources
    expected = resources.settings.ops_token
    given = bearer_token(connection)
    # compare_digest on equal-length digests: constant time whatever the input length
    return bool(expected) and hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def is_ops_path(path: str) -> bool:
    return path == "/ops" or path.startswith("/ops/")


def require_ops_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if not has_ops_token(connection):
        raise NotAuthorizedException(detail=REFUSAL, headers={"WWW-Authenticate": "Bearer"})


def ops_actor(connection: ASGIConnection) -> str:
    """Who is acting: the X-Ops-Actor header when given, else the token's fingerprint."""
    name = connection.headers.get(ACTOR_HEADER, "").strip()[:64]
    token = bearer_token(connection)
    label = token_fingerprint(token) if token else "anonymous"
    return f"{name} ({label})" if name else label
