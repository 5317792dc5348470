"""POST /ops/backfill wakes md_backfill through Airflow's REST API, and never fails because of it.

Airflow is an HTTP server here (pytest-httpserver) answering as Airflow's api-server does;
tests/e2e/test_backfill_wakeup.py does the same against a real Airflow.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from api.app import create_app
from market_data.airflow_rest import BACKFILL_QUEUE_ASSET
from market_data.settings import get_settings
from tests.api.test_ops_backfill import BODY, auth
from tests.api.ws_harness import metric_samples


async def app_client(**settings: object) -> AsyncIterator[AsyncTestClient]:
    app = create_app(msgspec.structs.replace(get_settings(), **settings))
    async with AsyncTestClient(app=app) as c:
        yield c


def wakeups(text: str) -> dict[str, float]:
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in metric_samples(text).items()
        if name == "backfill_wakeups_total"
    }


@pytest.fixture
def airflow(httpserver: HTTPServer, tmp_path: Path) -> tuple[HTTPServer, Path, list[dict]]:
    """An Airflow api-server: /auth/token for the credentials file's password, the asset, its events."""
    credentials = tmp_path / "simple_auth_manager_passwords.json.generated"
    credentials.write_text(json.dumps({"admin": "x", "market_data_api": "s3cret"}))
    events: list[dict] = []

    def token(request: Request) -> Response:
        body = request.get_json()
        if body != {"username": "market_data_api", "password": "s3cret"}:
            return Response("{}", status=401)
        return Response(json.dumps({"access_token": "jwt-1"}), status=201, content_type="application/json")

    def post_event(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer jwt-1":
            return Response("{}", status=401)
        events.append(request.get_json())
        return Response(json.dumps({"id": len(events)}), content_type="application/json")

    httpserver.expect_request("/auth/token", method="POST").respond_with_handler(token)
    httpserver.expect_request(
        "/api/v2/assets", method="GET", query_string={"name_pattern": BACKFILL_QUEUE_ASSET, "limit": "100"}
    ).respond_with_json({"assets": [{"id": 7, "name": BACKFILL_QUEUE_ASSET}], "total_entries": 1})
    httpserver.expect_request("/api/v2/assets/events", method="POST").respond_with_handler(post_event)
    return httpserver, credentials, events


async def test_queued_jobs_wake_md_backfill_with_an_asset_event(airflow, conn) -> None:
    server, credentials, events = airflow
    async for client in app_client(
        airflow_api_url=server.url_for("/").rstrip("/"), airflow_api_credentials_file=credentials
    ):
        r = await client.post("/ops/backfill", json=BODY, headers=auth())
        assert r.status_code == 202, r.text
        assert events == [{"asset_id": 7, "extra": {"request_id": r.json()["request_id"], "source": "api"}}]
        assert wakeups((await client.get("/metrics")).text) == {"ok": 1.0}


async def test_an_unreachable_airflow_never_fails_the_request(conn, caplog, capfd) -> None:
    async for client in app_client(airflow_api_url="http://127.0.0.1:9", airflow_api_password="x"):
        r = await client.post("/ops/backfill", json=BODY, headers=auth())
        assert r.status_code == 202, r.text
        assert await conn.fetchval("SELECT count(*) FROM backfill_jobs WHERE status = 'queued'") == 2
        assert wakeups((await client.get("/metrics")).text) == {"failed": 1.0}
    logged = caplog.text + "".join(capfd.readouterr())  # the app logs through Litestar's handler
    assert "md_backfill could not be woken" in logged and "not reachable" in logged


async def test_airflow_refusing_the_apis_user_is_a_failed_wakeup_not_a_failed_request(airflow, conn) -> None:
    server, credentials, events = airflow
    credentials.write_text(json.dumps({"market_data_api": "wrong"}))
    async for client in app_client(
        airflow_api_url=server.url_for("/").rstrip("/"), airflow_api_credentials_file=credentials
    ):
        r = await client.post("/ops/backfill", json=BODY, headers=auth())
        assert r.status_code == 202 and events == []
        assert wakeups((await client.get("/metrics")).text) == {"failed": 1.0}


async def test_a_request_that_queues_nothing_wakes_nobody(airflow, conn, restore_default_policy) -> None:
    server, credentials, events = airflow
    from market_data.policy.store import reload_policy

    capped = get_settings().policy_file.read_text().replace("T0 = 20000", "T0 = 1")
    assert capped != get_settings().policy_file.read_text()
    await reload_policy(conn, capped, actor="tests")
    await conn.execute(  # the T0 queue is full: one queued job, cap 1
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source)
           VALUES ('MSFT', '1m', '2026-11-20T14:30Z', '2026-11-20T15:30Z', 'T0', 10, 'gap')"""
    )
    async for client in app_client(
        airflow_api_url=server.url_for("/").rstrip("/"), airflow_api_credentials_file=credentials
    ):
        r = await client.post("/ops/backfill", json={**BODY, "symbols": ["AAPL"]}, headers=auth())
        assert r.status_code == 202 and r.json()["refused"] == {"T0": 1}
        assert events == [] and wakeups((await client.get("/metrics")).text) == {}
