"""Postgres down or out of connections: every read and ops call answers 503 with Retry-After, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data import db
from market_data.settings import get_settings
from tests.conftest import RUN_ID

DOWN = "postgresql://postgres@127.0.0.1:1/none"


async def assert_unavailable(
    client: AsyncTestClient,
    path: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    r = await client.get(path, params=params, headers=headers)
    assert r.status_code == 503, (path, r.status_code, r.text)
    assert r.headers["retry-after"].isdigit()
    body = r.json()
    assert body["status_code"] == 503 and "the database is unavailable" in body["detail"]


async def test_a_database_that_refuses_connections_gives_503_with_retry_after() -> None:
    settings = msgspec.structs.replace(get_settings(), database_url=DOWN)
    async with AsyncTestClient(app=create_app(settings)) as client:
        await assert_unavailable(client, "/stocks/AAPL/price")
        await assert_unavailable(client, "/stocks/AAPL/history", params={"interval": "1m"})
        token = {"Authorization": f"Bearer {settings.ops_token}"}
        await assert_unavailable(client, "/ops/dlq/backfills", headers=token)


@pytest.fixture
async def full_role(md_dsn: str) -> AsyncIterator[str]:
    """A login role of this run that Postgres refuses every connection to: 'too many connections'."""
    role = f"md_full_{RUN_ID}".lower()
    admin = await asyncpg.connect(db.dsn_with_database(md_dsn, "postgres"))
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        yield role
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_database_out_of_connections_gives_503_not_500(md_dsn: str, full_role: str) -> None:
    full = md_dsn.replace("postgres@", f"{full_role}@", 1)
    with pytest.raises(asyncpg.TooManyConnectionsError):  # what the API meets
        await asyncpg.connect(full)
    settings = msgspec.structs.replace(get_settings(), database_url=full)
    async with AsyncTestClient(app=create_app(settings)) as client:
        await assert_unavailable(client, "/stocks/AAPL/price")
        r = await client.get("/stocks/AAPL/price")
        assert "TooManyConnectionsError" in r.json()["detail"]


# Answer without Postgres or Redis: the service info, and /metrics (it leaves out what it
# cannot read); /health and /ready document their own 503 with a report body.
NO_DEPENDENCY = {"/", "/metrics"}


def test_every_operation_that_reads_postgres_or_redis_documents_the_503() -> None:
    schema = create_app(get_settings()).openapi_schema
    for path, item in (schema.paths or {}).items():
        for method in ("get", "post"):
            op = getattr(item, method, None)
            if op is not None and path not in NO_DEPENDENCY:
                assert "503" in (op.responses or {}), f"{method.upper()} {path}"


async def test_a_pooled_connection_whose_backend_was_terminated_gives_503_not_500() -> None:
    # what asyncpg raises when a pooled connection's backend was terminated while it sat idle
    # (found by ./dev soak: every backend terminated, the next read of such a connection)
    from litestar import Litestar, get

    from api.errors import EXCEPTION_HANDLERS

    @get("/broken")
    async def broken() -> None:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 11; another operation (2) is in progress"
        )

    @get("/bug")
    async def bug() -> None:
        raise asyncpg.exceptions.InternalClientError("something else")

    app = Litestar([broken, bug], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    async with AsyncTestClient(app=app) as client:
        await assert_unavailable(client, "/broken")
        assert (await client.get("/bug")).status_code == 500
