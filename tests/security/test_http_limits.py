"""Request size limits and CORS, against a real uvicorn server (as `./dev up` runs the API).

- A body over `request_max_body_size` (1 MiB) is refused with 413, whether it announces its
  length or streams it chunked; the ops token does not lift the limit; one just under the
  limit is read (and refused for what it says, not for its size).
- An oversized header block is refused by the server without a 5xx.
- CORS is closed by default: no Access-Control-Allow-Origin for any origin, preflight or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from market_data.settings import get_settings
from tests.api.ws_harness import live_server

LIMIT = 1_048_576
AUTH = {"Authorization": f"Bearer {get_settings().ops_token}", "Content-Type": "application/json"}


def body_of(size: int) -> bytes:
    head, tail = b'{"policy": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def chunks(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_bodies_over_the_limit_are_413_announced_or_streamed(conn) -> None:
    async with live_server() as server, httpx.AsyncClient(timeout=30) as http:
        url = server.http("/ops/validate")
        r = await http.post(url, content=body_of(LIMIT + 1), headers=AUTH)
        assert r.status_code == 413, r.text
        r = await http.post(url, content=chunks(body_of(4 * LIMIT)), headers=AUTH)  # no Content-Length
        assert r.status_code == 413, r.text
        r = await http.post(server.http("/ops/backfill"), content=body_of(2 * LIMIT), headers=AUTH)
        assert r.status_code == 413
        # just under the limit: read, then refused for its content (the policy text's own limit)
        r = await http.post(url, content=body_of(LIMIT - 1), headers=AUTH)
        assert r.status_code == 400 and "policy" in r.json()["detail"]
        # the server is fine afterwards
        assert (await http.get(server.http("/health"))).status_code == 200


async def test_an_oversized_header_block_is_refused_without_a_5xx(conn) -> None:
    async with live_server() as server, httpx.AsyncClient(timeout=30) as http:
        try:
            r = await http.get(server.http("/stocks/AAPL/price"), headers={"X-Big": "y" * 200_000})
        except httpx.RemoteProtocolError:
            pass  # the server dropped the connection: refused
        else:
            assert 400 <= r.status_code < 500
        assert (await http.get(server.http("/health"))).status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3000", "null"])
async def test_cors_is_closed_by_default(client, origin: str) -> None:
    simple = await client.get("/health", headers={"Origin": origin})
    preflight = await client.options(
        "/ops/reload",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    for r in (simple, preflight):
        assert "access-control-allow-origin" not in r.headers, dict(r.headers)
        assert "access-control-allow-credentials" not in r.headers
    assert preflight.status_code >= 400  # the browser is told no
