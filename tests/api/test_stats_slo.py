"""GET /stats/slo: the latest sample per (tier, interval), the history and the active thresholds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from litestar.testing import AsyncTestClient

from api.stats.slo import SloController
from market_data.records import utcnow
from market_data.slo_samples import SloSample, store_samples


@pytest.fixture
async def slo_client(client: AsyncTestClient) -> AsyncTestClient:
    """The app's client; the controller is added when app.py does not register it (yet)."""
    app = client.app
    if not any(getattr(r, "path", None) == "/stats/slo" for r in app.routes):
        app.register(SloController)
    return client


def row(at, tier: str, interval: str, **kw: object) -> SloSample:
    values: dict[str, object] = dict(
        sampled_at=at,
        tier=tier,
        interval=interval,
        sampled_symbols=200,
        violating_symbols=0,
        violation_rate=0.0,
        max_gap_seconds=60.0,
        lag_seconds=60.0,
        lag_p95_seconds=60.0,
        queue_depth=0,
        oldest_age_seconds=0.0,
        active_symbols=200,
        uncovered_symbols=0,
        policy_version=1,
    )
    values.update(kw)
    return SloSample(**values)  # type: ignore[arg-type]


async def test_empty_store_still_reports_the_thresholds(slo_client: AsyncTestClient) -> None:
    r = await slo_client.get("/stats/slo")
    assert r.status_code == 200
    body = r.json()
    assert body["latest"] == [] and body["history"] == []
    assert body["policy_version"] >= 1
    assert body["thresholds"] == {
        "gap_threshold_multiplier": 2.0,
        "violation_rate_max": 0.005,
        "window_seconds": 3600.0,
        "sample_size": 200,
        "lag_warn_seconds": 300.0,
        "lag_critical_seconds": 900.0,
        "slow_call_seconds": 2.0,
    }


async def test_latest_per_pair_history_and_verdicts(slo_client: AsyncTestClient, conn) -> None:
    now = utcnow().replace(microsecond=0)
    earlier, later = now - timedelta(minutes=10), now - timedelta(minutes=5)
    await store_samples(conn, earlier, [row(earlier, "T0", "1m"), row(earlier, "T2", "1d", lag_seconds=None)])
    bad_t0 = row(
        later,
        "T0",
        "1m",
        violating_symbols=2,
        violation_rate=0.01,
        max_gap_seconds=300.0,
        queue_depth=4,
        oldest_age_seconds=1200.0,
        expected_bars=12000,
        missing_bars=30,
        confirmed_empty_bars=4,
    )
    await store_samples(conn, later, [bad_t0, row(later, "T1", "5m", lag_seconds=600.0)])

    body = (await slo_client.get("/stats/slo")).json()
    latest = {(x["tier"], x["interval"]): x for x in body["latest"]}
    assert list(latest) == [("T0", "1m"), ("T1", "5m"), ("T2", "1d")]
    t0, t1, t2 = latest.values()
    assert t0["sampled_at"].startswith(later.isoformat()[:19])
    assert (t0["violation_rate"], t0["gap_threshold_seconds"], t0["continuity_met"], t0["met"]) == (
        0.01,
        120.0,
        False,
        False,
    )
    assert (t0["queue_depth"], t0["oldest_age_seconds"], t0["lag_status"]) == (4, 1200.0, "ok")
    assert (t0["expected_bars"], t0["missing_bars"], t0["confirmed_empty_bars"]) == (12000, 30, 4)
    assert t1["expected_bars"] is None  # a sample stored before coverage was measured
    assert (t1["gap_threshold_seconds"], t1["lag_status"], t1["met"]) == (600.0, "warn", True)
    assert (t2["lag_status"], t2["met"], t2["gap_threshold_seconds"]) == ("unknown", False, 172800.0)

    history = body["history"]
    assert [(x["tier"], x["sampled_at"][:16]) for x in history] == [
        ("T1", later.isoformat()[:16]),
        ("T0", later.isoformat()[:16]),
        ("T2", earlier.isoformat()[:16]),
        ("T0", earlier.isoformat()[:16]),
    ]
    assert history[3]["met"] is True

    limited = (await slo_client.get("/stats/slo", params={"limit": 1})).json()
    assert len(limited["history"]) == 1 and len(limited["latest"]) == 3
    since = (
        await slo_client.get("/stats/slo", params={"since": (later - timedelta(seconds=1)).isoformat()})
    ).json()
    assert {x["tier"] for x in since["history"]} == {"T0", "T1"}


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "2999-01-01T00:00:00Z"}, "since"),
        ({"since": "2001-01-01T00:00:00Z"}, "since"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    slo_client: AsyncTestClient, params: dict, parameter: str
) -> None:
    r = await slo_client.get("/stats/slo", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == parameter and body["detail"].startswith(parameter)


async def test_documented_in_openapi(slo_client: AsyncTestClient) -> None:
    spec = (await slo_client.get("/schema/openapi.json")).json()
    op = spec["paths"]["/stats/slo"]["get"]
    assert op["operationId"] == "getSloStats" and op["summary"] and op["description"]
    assert {p["name"] for p in op["parameters"]} == {"limit", "since"}
    assert "400" in op["responses"]
