"""GET /metrics: every API-side catalog metric, queue gauges read at scrape time, route templates;
and the API's registry (`api/observability/metrics.py`) on its own."""

from __future__ import annotations

import asyncio
import re

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.observability.metrics import (
    HTTP_REQUEST_DURATION_SECONDS,
    ScrapeValues,
    api_metric_names,
    build_api_metrics,
)
from market_data.metrics import CATALOG
from market_data.settings import get_settings
from tests.api.ws_harness import connect, live_server, metric_samples, notify_bar, recv, subscribe

JOB = """
INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status, created_at)
VALUES ($1, '1m', now() - interval '2 hours', now() - interval '1 hour', $2, 1, 'gap', $3,
        now() - $4::text::interval)"""


async def test_metrics_expose_every_api_side_catalog_metric_without_a_token(client: AsyncTestClient) -> None:
    r = await client.get("/metrics")  # no Authorization header: Prometheus scrapes it as is
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    declared = {f.name for f in text_string_to_metric_families(r.text)}
    # prometheus_client strips `_total` from counter family names
    for name in [*api_metric_names(), HTTP_REQUEST_DURATION_SECONDS]:
        assert name.removesuffix("_total") in declared, name
    settings = get_settings()
    assert settings.ops_token not in r.text
    assert settings.database_url not in r.text and "postgresql://" not in r.text


async def test_queue_gauges_and_policy_version_are_read_from_postgres(client: AsyncTestClient, conn) -> None:
    for symbol, tier, status, age in [
        ("AAPL", "T0", "queued", "10 minutes"),
        ("MSFT", "T0", "running", "1 minute"),
        ("VOD.L", "T2", "queued", "30 seconds"),
        ("NVDA", "T1", "done", "3 hours"),  # finished jobs do not count
        ("AMZN", "T1", "dead", "3 hours"),
    ]:
        await conn.execute(JOB, symbol, tier, status, age)
    active = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
    got = metric_samples((await client.get("/metrics")).text)
    depth = {t: got[("backfill_queue_depth", (("tier", t),))] for t in ("T0", "T1", "T2")}
    age = {t: got[("backfill_oldest_age_seconds", (("tier", t),))] for t in ("T0", "T1", "T2")}
    assert depth == {"T0": 2, "T1": 0, "T2": 1}
    assert 600 <= age["T0"] < 700 and age["T1"] == 0 and 30 <= age["T2"] < 120
    assert got[("policy_version_info", (("version", str(active)),))] == 1
    # a later scrape sees the queue as it is then
    await conn.execute("UPDATE backfill_jobs SET status = 'done' WHERE tier = 'T0'")
    got = metric_samples((await client.get("/metrics")).text)
    assert got[("backfill_queue_depth", (("tier", "T0"),))] == 0


async def test_market_open_is_exposed_for_every_exchange_of_the_active_universe(
    client: AsyncTestClient, conn
) -> None:
    from market_data import calendar
    from market_data.records import utcnow

    before = utcnow()
    got = metric_samples((await client.get("/metrics")).text)
    after = utcnow()
    opened = {dict(labels)["mic"]: value for (name, labels), value in got.items() if name == "market_open"}
    mics = sorted(r[0] for r in await conn.fetch("SELECT DISTINCT exchange_mic FROM symbol_universe"))
    assert sorted(opened) == mics == ["ARCX", "C247", "XLON", "XNAS", "XNYS", "XTKS"]
    for mic, value in opened.items():
        if calendar.is_open_at(mic, before) == calendar.is_open_at(mic, after):  # no session edge meanwhile
            assert value == float(calendar.is_open_at(mic, after)), mic
    try:
        await conn.execute("UPDATE symbol_universe SET active = false WHERE exchange_mic = 'XTKS'")
        got = metric_samples((await client.get("/metrics")).text)
        assert ("market_open", (("mic", "XTKS"),)) not in got  # only exchanges of the active universe
    finally:
        await conn.execute("UPDATE symbol_universe SET active = true WHERE exchange_mic = 'XTKS'")


async def test_request_latency_is_labelled_by_route_template_not_raw_path(client: AsyncTestClient) -> None:
    for symbol in ("AAPL", "MSFT", "NOSUCH", "bad symbol!"):
        await client.get(f"/stocks/{symbol}/price")
    await client.get("/health")
    got = metric_samples((await client.get("/metrics")).text)
    counts = [dict(labels) for name, labels in got if name == "http_request_duration_seconds_count"]
    by_route = {c["route"] for c in counts}
    assert "/stocks/{symbol}/price" in by_route and "/health" in by_route
    assert not any("AAPL" in r or "MSFT" in r or "NOSUCH" in r for r in by_route)
    statuses = {
        c["status"] for c in counts if c["route"] == "/stocks/{symbol}/price" and c["method"] == "GET"
    }
    assert {"404", "400"} <= statuses  # unknown symbol, malformed symbol


async def test_metrics_answer_without_postgres_and_leave_the_queue_samples_out(md_dsn: str) -> None:
    settings = msgspec.structs.replace(get_settings(), database_url="postgresql://postgres@127.0.0.1:1/none")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert "# TYPE backfill_queue_depth gauge" in r.text
    assert "backfill_queue_depth{" not in r.text


async def test_websocket_metrics_count_clients_and_publish_latency(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL"])
        for seq in range(5):
            await notify_bar(conn, "AAPL", seq)
        assert [(await recv(ws))["seq"] for _ in range(5)] == list(range(5))
        text = (await httpx.AsyncClient().get(server.http("/metrics"))).text
        got = metric_samples(text)
        assert got[("ws_clients_gauge", ())] == 1
        assert got[("ws_publish_latency_ms_count", ())] == 5
        assert 0 < got[("ws_publish_latency_ms_sum", ())] < 5 * 1000
        assert got[("ws_dropped_messages_total", ())] == 0
        await ws.close()


# --- the registry itself (no app) -----------------------------------------------------------
API_METRICS = [m for m in CATALOG.values() if m.from_api]


def exposition_names(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def test_api_registry_exposes_every_api_side_metric_without_a_source() -> None:
    text = build_api_metrics().generate_latest().decode()
    names = exposition_names(text)
    assert {m.name for m in API_METRICS} <= names
    assert HTTP_REQUEST_DURATION_SECONDS in names
    for m in API_METRICS:
        assert f"# TYPE {m.name} {m.type}" in text


def test_api_registry_reads_scrape_values_on_render() -> None:
    calls = 0

    async def source() -> ScrapeValues:
        nonlocal calls
        calls += 1
        return ScrapeValues(
            backfill_queue_depth={"T0": 12, "T2": 3},
            backfill_oldest_age_seconds={"T0": 901.5},
            policy_version=4,
        )

    api = build_api_metrics(source)
    api.ws_clients.inc(2)
    api.ws_publish_latency_ms.observe(120.0)
    api.ws_dropped_messages.inc()
    api.http_request_duration_seconds.labels("GET", "/stocks/{symbol}/price", "200").observe(0.012)
    text = asyncio.run(api.render()).decode()
    assert calls == 1
    for line in [
        'backfill_queue_depth{tier="T0"} 12.0',
        'backfill_queue_depth{tier="T1"} 0.0',
        'backfill_queue_depth{tier="T2"} 3.0',
        'backfill_oldest_age_seconds{tier="T0"} 901.5',
        'backfill_oldest_age_seconds{tier="T1"} 0.0',
        'policy_version_info{version="4"} 1.0',
        "ws_clients_gauge 2.0",
        'ws_publish_latency_ms_bucket{le="250.0"} 1.0',
        "ws_dropped_messages_total 1.0",
        'http_request_duration_seconds_count{method="GET",route="/stocks/{symbol}/price",status="200"} 1.0',
    ]:
        assert line in text, line


@pytest.mark.parametrize("failure", ["raises", "hangs"])
def test_a_failing_source_leaves_the_queue_samples_out(failure: str) -> None:
    async def source() -> ScrapeValues:
        if failure == "raises":
            raise ConnectionError("postgres is down")
        await asyncio.sleep(10)
        return ScrapeValues()

    api = build_api_metrics(source, scrape_timeout=0.05)
    text = asyncio.run(api.render()).decode()
    assert {m.name for m in API_METRICS} <= exposition_names(text)
    assert "backfill_queue_depth{" not in text and "policy_version_info{" not in text


def test_each_app_gets_its_own_registry() -> None:
    a, b = build_api_metrics(), build_api_metrics()
    a.ws_clients.inc()
    assert a.registry is not b.registry
    assert "ws_clients_gauge 0.0" in b.generate_latest().decode()
