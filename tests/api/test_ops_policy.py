"""/ops/validate, /ops/reload, /ops/policy*: token required, refusals change nothing, audited,
and a second API process picks up a reload without a restart."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data.settings import get_settings

pytestmark = pytest.mark.usefixtures("restore_default_policy")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().ops_token}", "X-Ops-Actor": "alice"}


def t1_cadence(c: str) -> str:
    doc = re.sub(r'^bar_cadence = "5m"$', f'bar_cadence = "{c}"', DEFAULT, count=1, flags=re.M)
    return re.sub(r'^lookback = "1h"$', 'lookback = "2h"', doc, count=1, flags=re.M)


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/ops/validate"),
        ("POST", "/ops/reload"),
        ("GET", "/ops/policy"),
        ("GET", "/ops/policy/versions"),
        ("POST", "/ops/policy/rollback/1"),
        ("POST", "/ops/policy/rollback/99999"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
async def test_ops_need_the_token_and_refuse_alike(
    client: AsyncTestClient, method: str, path: str, header
) -> None:
    headers = {"Authorization": header} if header else {}
    r = await client.request(method, path, headers=headers, json={"policy": DEFAULT})
    assert r.status_code == 401
    assert r.json() == {"status_code": 401, "detail": "a valid ops bearer token is required"}
    assert r.headers.get("www-authenticate") == "Bearer"


async def test_validate_returns_ok_or_every_problem_and_stores_nothing(client: AsyncTestClient, conn) -> None:
    before = await conn.fetchval("SELECT count(*) FROM policy_versions")
    ok = await client.post("/ops/validate", json={"policy": DEFAULT}, headers=auth())
    assert ok.status_code == 200 and ok.json() == {"ok": True, "problems": []}
    bad_doc = DEFAULT.replace("breaker = 0.45", "breaker = 0.5").replace(
        'lag_critical = "15m"', 'lag_critical = "1m"'
    )
    bad = await client.post("/ops/validate", json={"policy": bad_doc}, headers=auth())
    assert bad.status_code == 422
    assert {p["path"] for p in bad.json()["problems"]} == {"health_weights", "slo.lag_critical"}
    assert await conn.fetchval("SELECT count(*) FROM policy_versions") == before


async def test_reload_activates_and_is_audited(client: AsyncTestClient, conn) -> None:
    r = await client.post("/ops/reload", json={"policy": t1_cadence("15m")}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] and body["created"] and body["version"]["activated_by"].startswith("alice (token:")
    active = (await client.get("/ops/policy", headers=auth())).json()
    assert active["version"]["version"] == body["version"]["version"]
    assert active["policy"]["tiers"]["T1"]["bar_cadence"] == "15m"
    cadence = (await client.get("/stats/cadence")).json()
    assert cadence["policy_version"] == body["version"]["version"]
    assert cadence["tiers"]["T1"]["bar_cadence"] == "15m"
    windows = {tier: t["revision_window"] for tier, t in cadence["tiers"].items()}
    assert windows == {"T0": "2m", "T1": "10m", "T2": "0s"}
    rows = await conn.fetch("SELECT actor, method, path, status, detail FROM ops_audit ORDER BY id")
    assert [(r["method"], r["path"], r["status"]) for r in rows[-2:]] == [
        ("POST", "/ops/reload", 200),
        ("GET", "/ops/policy", 200),
    ]
    reload_row = rows[-2]
    assert reload_row["actor"].startswith("alice (token:")
    assert json.loads(reload_row["detail"]) == {"version": body["version"]["version"], "created": True}
    assert get_settings().ops_token not in str([dict(r) for r in rows])


async def test_refused_reload_changes_nothing_and_refusals_are_audited(client: AsyncTestClient, conn) -> None:
    before = await conn.fetchval("SELECT max(version) FROM policy_versions")
    r = await client.post(
        "/ops/reload", json={"policy": DEFAULT.replace("breaker = 0.45", "breaker = 2")}, headers=auth()
    )
    assert r.status_code == 422
    assert await conn.fetchval("SELECT max(version) FROM policy_versions") == before
    await client.get("/ops/policy", headers={"Authorization": "Bearer nope"})
    statuses = [
        r["status"] for r in await conn.fetch("SELECT status FROM ops_audit ORDER BY id DESC LIMIT 2")
    ]
    assert statuses == [401, 422]


async def test_stale_expected_active_is_409(client: AsyncTestClient, conn) -> None:
    active = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
    r = await client.post(
        "/ops/reload", json={"policy": t1_cadence("10m"), "expected_active": active - 1}, headers=auth()
    )
    assert r.status_code == 409 and r.json()["parameter"] == "expected_active"


async def test_rollback_and_versions(client: AsyncTestClient) -> None:
    first = (await client.post("/ops/reload", json={"policy": t1_cadence("10m")}, headers=auth())).json()
    await client.post("/ops/reload", json={"policy": t1_cadence("15m")}, headers=auth())
    v = first["version"]["version"]
    back = await client.post(f"/ops/policy/rollback/{v}", headers=auth())
    assert back.status_code == 200 and back.json()["version"]["note"] == f"rollback to version {v}"
    assert (await client.get("/stats/cadence")).json()["tiers"]["T1"]["bar_cadence"] == "10m"
    missing = await client.post("/ops/policy/rollback/99999", headers=auth())
    assert missing.status_code == 404
    versions = (await client.get("/ops/policy/versions", params={"limit": 3}, headers=auth())).json()
    assert len(versions) == 3 and versions[0]["active"] is True


async def test_a_malformed_request_body_is_a_400_naming_it(client: AsyncTestClient) -> None:
    r = await client.post("/ops/reload", json={"polcy": DEFAULT}, headers=auth())
    assert r.status_code == 400
    r = await client.post(
        "/ops/reload", content=b"[tiers", headers={**auth(), "content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_another_api_process_sees_a_reload_without_restart(client: AsyncTestClient) -> None:
    other = create_app(get_settings())
    async with AsyncTestClient(app=other) as second:
        assert (await second.get("/stats/cadence")).json()["tiers"]["T1"]["bar_cadence"] == "5m"
        r = await client.post("/ops/reload", json={"policy": t1_cadence("15m")}, headers=auth())
        assert r.status_code == 200
        seen = None
        for _ in range(40):  # the md_policy notification reaches the other process
            seen = (await second.get("/stats/cadence")).json()["tiers"]["T1"]["bar_cadence"]
            if seen == "15m":
                break
            await asyncio.sleep(0.05)
        assert seen == "15m"
