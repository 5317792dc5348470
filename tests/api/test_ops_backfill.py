"""/ops/backfill, /ops/dlq/backfills*, /ops/cursor: token, validation, DLQ round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from market_data.settings import get_settings

MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().ops_token}"}


BODY = {
    "symbols": ["AAPL", "MSFT"],
    "interval": "1m",
    "start": "2026-11-23T14:30:00Z",
    "end": "2026-11-23T21:00:00Z",
}


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/ops/backfill"),
        ("GET", "/ops/backfills"),
        ("GET", "/ops/backfills/1"),
        ("GET", "/ops/backfills/999999"),
        ("GET", "/ops/dlq/backfills"),
        ("POST", "/ops/dlq/backfills/requeue/1"),
        ("POST", "/ops/dlq/backfills/requeue/999999"),
        ("POST", "/ops/dlq/backfills/purge"),
        ("GET", "/ops/cursor/AAPL/1m/synthetic"),
        ("GET", "/ops/cursor/NOPE/1m/nobody"),
    ],
)
async def test_every_backfill_ops_call_needs_the_token_and_refuses_alike(
    client: AsyncTestClient, method, path
) -> None:
    r = await client.request(method, path, json=BODY, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["detail"] == "a valid ops bearer token is required"


async def test_manual_backfill_round_trip(client: AsyncTestClient, conn) -> None:
    body = {
        "symbols": ["AAPL", "MSFT"],
        "interval": "5m",
        "start": "2026-11-23T14:30:00Z",
        "end": "2026-11-23T21:00:00Z",
    }
    r = await client.post("/ops/backfill", json=body, headers={**auth(), "X-Ops-Actor": "alice"})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["inserted"] == 2 and len(out["job_ids"]) == 2 and out["refused"] == {}
    assert r.headers["location"] == f"/ops/backfills/{out['request_id']}"
    rows = await conn.fetch("SELECT symbol, source, priority, status FROM backfill_jobs ORDER BY symbol")
    assert [tuple(r) for r in rows] == [("AAPL", "api", 0, "queued"), ("MSFT", "api", 0, "queued")]
    audit = await conn.fetchrow("SELECT path, status, detail FROM ops_audit ORDER BY id DESC LIMIT 1")
    assert (audit["path"], audit["status"]) == ("/ops/backfill", 202)
    assert json.loads(audit["detail"])["request_id"] == out["request_id"]

    progress = await client.get(r.headers["location"], headers=auth())
    assert progress.status_code == 200, progress.text
    view = progress.json()
    assert view["request_id"] == out["request_id"] and view["status"] == "queued"
    assert view["job_counts"] == {"queued": 2, "running": 0, "done": 0, "dead": 0}
    assert (view["bars_written"], view["errors"], view["source"]) == (0, [], "api")
    assert view["actor"].startswith("alice (token:") and view["symbols"] == ["AAPL", "MSFT"]
    assert sorted(j["id"] for j in view["jobs"]) == sorted(out["job_ids"])
    assert all(j["request_ids"] == [out["request_id"]] for j in view["jobs"])
    await conn.execute("UPDATE backfill_jobs SET status = 'done', bars_inserted = 78 WHERE symbol = 'AAPL'")
    await conn.execute(
        "UPDATE backfill_jobs SET status = 'dead', last_error = 'ServerError: boom' WHERE symbol = 'MSFT'"
    )
    view = (await client.get(r.headers["location"], headers=auth())).json()
    assert view["status"] == "failed" and view["bars_written"] == 78
    assert view["errors"] == [
        {"job_id": view["jobs"][1]["id"], "symbol": "MSFT", "status": "dead", "error": "ServerError: boom"}
    ]


async def test_an_unknown_request_is_a_404_naming_it(client: AsyncTestClient) -> None:
    r = await client.get("/ops/backfills/999999", headers=auth())
    assert r.status_code == 404 and r.json()["parameter"] == "request_id"
    assert (await client.get("/ops/backfills/0", headers=auth())).json()["parameter"] == "request_id"


async def test_jobs_are_listed_by_status_and_symbol_in_pages(client: AsyncTestClient, conn) -> None:
    for symbols in (["AAPL"], ["MSFT", "NVDA"]):
        r = await client.post("/ops/backfill", json={**BODY, "symbols": symbols}, headers=auth())
        assert r.status_code == 202
    await conn.execute("UPDATE backfill_jobs SET status = 'done' WHERE symbol = 'NVDA'")
    page = (await client.get("/ops/backfills", params={"limit": 2}, headers=auth())).json()
    assert [j["symbol"] for j in page["jobs"]] == ["NVDA", "MSFT"] and page["next_before_id"]
    rest = (
        await client.get("/ops/backfills", params={"before_id": page["next_before_id"]}, headers=auth())
    ).json()
    assert [j["symbol"] for j in rest["jobs"]] == ["AAPL"] and rest["next_before_id"] is None
    queued = (await client.get("/ops/backfills", params={"status": "queued"}, headers=auth())).json()
    assert [j["symbol"] for j in queued["jobs"]] == ["MSFT", "AAPL"]
    mine = (await client.get("/ops/backfills", params={"symbol": "aapl"}, headers=auth())).json()
    assert [(j["symbol"], j["source"], j["status"]) for j in mine["jobs"]] == [("AAPL", "api", "queued")]


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"status": "lost"}, "status"),
        ({"symbol": "AA$"}, "symbol"),
        ({"limit": 501}, "limit"),
        ({"limit": 0}, "limit"),
        ({"before_id": -1}, "before_id"),
    ],
)
async def test_a_bad_job_listing_parameter_is_a_400_naming_it(
    client: AsyncTestClient, params, parameter
) -> None:
    r = await client.get("/ops/backfills", params=params, headers=auth())
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter


@pytest.mark.parametrize(
    "body,path",
    [
        ({**BODY, "symbols": []}, "symbols"),
        ({**BODY, "symbols": ["AA$"]}, "symbols"),
        ({**BODY, "interval": "2m"}, "interval"),
        ({**BODY, "start": "yesterday"}, "start"),
        ({**BODY, "start": "2026-11-23T14:30:00"}, "start"),
        ({**BODY, "colour": "red"}, "colour"),
    ],
)
async def test_malformed_requests_are_400s_naming_the_field(client: AsyncTestClient, body, path) -> None:
    r = await client.post("/ops/backfill", json=body, headers=auth())
    assert r.status_code == 400, r.text
    assert path in r.json()["detail"]


async def test_policy_bounds_are_422_with_every_problem(client: AsyncTestClient, conn) -> None:
    body = {
        "symbols": ["AAPL", "ZZZZZ"],
        "interval": "1m",
        "start": "2020-01-01T00:00:00Z",
        "end": "2020-06-01T00:00:00Z",
    }
    r = await client.post("/ops/backfill", json=body, headers=auth())
    assert r.status_code == 422
    assert sorted(p["path"] for p in r.json()["problems"]) == ["end", "start", "symbols"]
    assert await conn.fetchval("SELECT count(*) FROM backfill_jobs") == 0


async def _dead_jobs(conn, n: int) -> list[int]:
    ids = []
    for i in range(n):
        ids.append(
            await conn.fetchval(
                """INSERT INTO backfill_jobs
                       (symbol, interval, start_ts, end_ts, tier, priority, source, status,
                        last_error, updated_at)
               VALUES ('AAPL', '1m', $1, $2, 'T0', 10, 'gap', 'dead', 'ServerError: boom',
                       now() - $3::interval)
               RETURNING id""",
                MON + timedelta(minutes=10 * i),
                MON + timedelta(minutes=10 * i + 5),
                timedelta(days=i * 10),
            )
        )
    return ids


async def test_dlq_pages_requeues_and_purges(client: AsyncTestClient, conn) -> None:
    ids = await _dead_jobs(conn, 5)
    first = (await client.get("/ops/dlq/backfills", params={"limit": 2}, headers=auth())).json()
    assert [j["id"] for j in first["jobs"]] == [ids[4], ids[3]] and first["next_before_id"] == ids[3]
    rest = (
        await client.get(
            "/ops/dlq/backfills", params={"limit": 10, "before_id": first["next_before_id"]}, headers=auth()
        )
    ).json()
    assert [j["id"] for j in rest["jobs"]] == [ids[2], ids[1], ids[0]] and rest["next_before_id"] is None
    assert rest["jobs"][0]["last_error"] == "ServerError: boom"
    r = await client.post(f"/ops/dlq/backfills/requeue/{ids[0]}", headers=auth())
    assert r.status_code == 200 and r.json() == {"job_id": ids[0], "status": "queued"}
    again = await client.post(f"/ops/dlq/backfills/requeue/{ids[0]}", headers=auth())
    assert again.status_code == 404 and again.json()["parameter"] == "job_id"
    purged = await client.post("/ops/dlq/backfills/purge", params={"older_than_days": 15}, headers=auth())
    assert purged.json() == {"purged": 3, "older_than_days": 15}  # dead for 20, 30 and 40 days
    left = (await client.get("/ops/dlq/backfills", headers=auth())).json()["jobs"]
    assert [j["id"] for j in left] == [ids[1]]


async def test_cursor_lookup(client: AsyncTestClient, conn) -> None:
    bars = SyntheticProvider().bars_for(
        "AAPL", "XNAS", Interval.M1, MON, MON + timedelta(minutes=5), MON + timedelta(days=1)
    )
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    r = await client.get("/ops/cursor/aapl/1m/synthetic", headers=auth())
    assert r.status_code == 200
    assert r.json()["last_ts"] == "2026-11-23T14:34:00Z" and r.json()["symbol"] == "AAPL"
    assert (await client.get("/ops/cursor/AAPL/1m/yahoo", headers=auth())).status_code == 404
    assert (await client.get("/ops/cursor/AAPL/2m/synthetic", headers=auth())).json()[
        "parameter"
    ] == "interval"
    assert (await client.get("/ops/cursor/AA$PL/1m/synthetic", headers=auth())).json()[
        "parameter"
    ] == "symbol"
