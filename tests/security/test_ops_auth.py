"""/ops/*: no token, a wrong one or a malformed header is the same 401 everywhere.

Every operation of the OpenAPI document under /ops is tried with ids that exist, ids that do
not and ids that are not even well formed, plus paths and methods that do not exist, each
with nine bad Authorization headers: every answer is the same 401 body with
`WWW-Authenticate: Bearer`, so an unauthenticated caller learns nothing about what exists,
and nothing is changed. The refusals that reach a route are audited, without the token.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from market_data.settings import get_settings

TOKEN = get_settings().ops_token
REFUSED = {"status_code": 401, "detail": "a valid ops bearer token is required"}
BAD_AUTH: list[str | None] = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    f"Bearer {TOKEN[:-1]}{'x' if TOKEN[-1] != 'x' else 'y'}",  # one character off
    f"Bearer {TOKEN}{TOKEN}",
    f"Bearer {TOKEN.upper()}",
    f"Basic {base64.b64encode(f'admin:{TOKEN}'.encode()).decode()}",
    TOKEN,  # no scheme
]
PARAMS = {
    "job_id": ["1", "999999", "abc", "-1", "0"],
    "request_id": ["1", "999999", "abc", "-1", "0"],
    "version": ["1", "9999", "x"],
    "symbol": ["AAPL", "NOPE", "a b"],
    "interval": ["1m", "7m"],
    "source": ["synthetic", "nobody"],
}
EXTRA = [
    ("GET", "/ops"),
    ("GET", "/ops/"),
    ("GET", "/ops/nonexistent"),
    ("POST", "/ops/nonexistent/1"),
    ("GET", "/ops/reload"),  # exists for POST only
    ("DELETE", "/ops/policy"),
    ("PUT", "/ops/backfill"),
    ("GET", "/ops/cursor/AAPL/1m"),
]
BODY = {"symbols": ["AAPL"], "interval": "1m", "start": "2026-11-23T14:30:00Z", "end": "2026-11-23T15:30:00Z"}


def concrete_paths(template: str) -> list[str]:
    paths = [template]
    for name in re.findall(r"\{(\w+)\}", template):
        paths = [p.replace(f"{{{name}}}", v) for p in paths for v in PARAMS[name]]
    return paths


async def seed(conn) -> None:
    now = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    bars = SyntheticProvider(clock=lambda: now).bars_for(
        "AAPL", "XNAS", Interval.M1, datetime(2026, 11, 23, 15, 0, tzinfo=UTC), now, now
    )
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    await conn.execute(
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status,
                                      finished_at, run_id, batch, last_error)
           VALUES ('AAPL', '1m', $1, $2, 'T0', 10, 'gap', 'dead', now(), 'r', 'synthetic:0', 'boom')""",
        now.replace(hour=14),
        now.replace(hour=15),
    )


async def state(conn) -> tuple[object, ...]:
    return (
        await conn.fetchval("SELECT count(*) FROM backfill_jobs"),
        await conn.fetchval("SELECT status FROM backfill_jobs WHERE id = 1"),
        await conn.fetchval("SELECT max(version) FROM policy_versions"),
        await conn.fetchval("SELECT version FROM policy_versions WHERE active"),
    )


async def test_every_ops_request_without_the_token_gets_the_same_401(client: AsyncTestClient, conn) -> None:
    await seed(conn)
    before = await state(conn)
    doc = (await client.get("/schema/openapi.json")).json()
    targets = [
        (method.upper(), path)
        for template, item in doc["paths"].items()
        if template.startswith("/ops")
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
        for path in concrete_paths(template)
    ]
    assert len({t for _, t in targets}) >= 20  # every ops operation, each with its ids
    for method, path in [*targets, *EXTRA]:
        for auth in BAD_AUTH:
            headers = {} if auth is None else {"Authorization": auth}
            r = await client.request(method, path, headers=headers, json=BODY if method == "POST" else None)
            assert (r.status_code, r.json(), r.headers.get("www-authenticate")) == (401, REFUSED, "Bearer"), (
                method,
                path,
                auth and auth[:12],
                r.status_code,
                r.text[:200],
            )
    assert await state(conn) == before  # nothing was changed by any of them
    audited = await conn.fetch("SELECT actor, status, path FROM ops_audit")
    assert audited and {r["status"] for r in audited} == {401}
    assert all(TOKEN not in r["actor"] for r in audited)
    # with the token, the same resources answer
    ok = await client.get("/ops/dlq/backfills", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["jobs"][0]["id"] == 1
    lower = await client.get("/ops/policy", headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235); the token is not


@pytest.mark.parametrize("given", ["", "Bearer ", "Bearer x"])
async def test_an_empty_configured_token_disables_the_ops_endpoints(md_dsn: str, conn, given: str) -> None:
    app = create_app(msgspec.structs.replace(get_settings(), ops_token=""))
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/ops/policy", headers={"Authorization": given})
        assert r.status_code == 401 and r.json() == REFUSED
