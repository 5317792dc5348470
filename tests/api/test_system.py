"""GET /, /health and the OpenAPI page."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data.settings import get_settings


async def test_service_info_lists_endpoints(client: AsyncTestClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["service"] == "market-data"
    assert "/stocks/{symbol}/history" in body["endpoints"]


async def test_health_ok_when_postgres_and_redis_answer(client: AsyncTestClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_health_503_names_redis_when_it_is_down(md_dsn: str) -> None:
    settings = msgspec.structs.replace(get_settings(), redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.json()["checks"]["postgres"] == "ok"
    assert r.json()["checks"]["redis"].startswith("down")


async def test_health_503_names_postgres_when_it_is_down(md_dsn: str) -> None:
    settings = msgspec.structs.replace(get_settings(), database_url="postgresql://postgres@127.0.0.1:1/none")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.json()["checks"]["postgres"].startswith("down")
    assert r.json()["checks"]["redis"] == "ok"


async def test_openapi_documents_every_operation(client: AsyncTestClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/", "/health", "/stocks/{symbol}/price", "/stocks/{symbol}/history"):
        op = paths[path]["get"]
        assert op["operationId"], path
        assert op.get("summary"), path
    assert "400" in paths["/stocks/{symbol}/history"]["get"]["responses"]
    assert "404" in paths["/stocks/{symbol}/price"]["get"]["responses"]
