"""GET /ready: dependencies, the live feed, and the age of the last sweep against the policy."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.system import ready
from market_data.policy import PolicyReader
from market_data.policy.schema import Duration
from market_data.settings import get_settings

SWEPT = """
INSERT INTO ingestion_cursors (symbol, interval, provider, last_ts, updated_at)
VALUES ('AAPL', '1m', 'synthetic', now(), now() - $1::text::interval)"""


async def test_not_ready_until_a_sweep_has_stored_bars(client: AsyncTestClient) -> None:
    r = await client.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not_ready" and body["not_ready"] == ["sweep"]
    assert body["checks"] == {
        "postgres": "ok",
        "redis": "ok",
        "live_feed": "ok",
        "sweep": "pending: no sweep has stored bars yet (the first runs start at once)",
    }
    assert body["sweep"]["last_sweep_at"] is None


async def test_with_crypto_pairs_in_t0_a_stopped_sweep_shows_at_any_hour(
    client: AsyncTestClient, conn
) -> None:
    """The pairs trade 24/7: no night or weekend excuses an hour-old sweep (no calendar is faked)."""
    await conn.execute(SWEPT, "1 hour")
    r = await client.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["sweep"].startswith("stale: last sweep 36")
    assert "C247" in body["sweep"]["exchanges"] and body["sweep"]["markets_open"] is True


async def test_ready_when_the_last_sweep_is_recent(client: AsyncTestClient, conn) -> None:
    await conn.execute(SWEPT, "30 seconds")
    r = await client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["not_ready"] == []
    assert body["checks"]["sweep"] == "ok"
    sweep = body["sweep"]
    assert 29 <= sweep["age_seconds"] < 90
    assert sweep["max_age_seconds"] == 900  # slo.lag_critical of the default policy
    # the tiers swept at least every 15 minutes (T0 1m, T1 5m) decide which markets count
    assert {"XNAS", "XNYS"} <= set(sweep["exchanges"]) and "XTKS" not in sweep["exchanges"]


async def test_a_stale_sweep_is_not_ready_while_markets_trade(
    client: AsyncTestClient, conn, monkeypatch
) -> None:
    await conn.execute(SWEPT, "1 hour")
    monkeypatch.setattr(ready, "traded_between", lambda mics, start, end: True)
    r = await client.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["not_ready"] == ["sweep"]
    assert body["checks"]["sweep"].startswith("stale: last sweep 36")
    assert body["checks"]["sweep"].endswith("limit 900 s")


async def test_a_stale_sweep_while_markets_are_closed_stays_ready(
    client: AsyncTestClient, conn, monkeypatch
) -> None:
    await conn.execute(SWEPT, "16 hours")
    seen: list[tuple[datetime, datetime]] = []

    def closed(mics: list[str], start: datetime, end: datetime) -> bool:
        seen.append((start, end))
        return False

    monkeypatch.setattr(ready, "traded_between", closed)
    r = await client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["checks"]["sweep"].startswith("ok: markets closed, last sweep 57")
    assert body["sweep"]["age_seconds"] > 15 * 3600
    # the window looked at: from the sweep until the sweep was due (now - lag_critical)
    ((start, end),) = seen
    assert round((end - start).total_seconds()) == 16 * 3600 - 900


async def test_the_limit_is_the_active_policys_lag_critical(
    client: AsyncTestClient, conn, monkeypatch
) -> None:
    await conn.execute(SWEPT, "1 hour")
    monkeypatch.setattr(ready, "traded_between", lambda mics, start, end: True)
    original = PolicyReader.get

    async def relaxed(self, pool):  # type: ignore[no-untyped-def]
        loaded = await original(self, pool)
        slo = msgspec.structs.replace(loaded.policy.slo, lag_critical=Duration("2h"))
        return msgspec.structs.replace(loaded, policy=msgspec.structs.replace(loaded.policy, slo=slo))

    monkeypatch.setattr(PolicyReader, "get", relaxed)
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json()["sweep"]["max_age_seconds"] == 7200


@pytest.mark.parametrize(
    ("start", "end", "traded"),
    [
        (
            datetime(2026, 11, 21, 0, 0, tzinfo=UTC),
            datetime(2026, 11, 23, 14, 0, tzinfo=UTC),
            False,
        ),  # weekend
        (
            datetime(2026, 11, 23, 21, 5, tzinfo=UTC),
            datetime(2026, 11, 24, 14, 29, tzinfo=UTC),
            False,
        ),  # night
        (datetime(2026, 11, 23, 21, 5, tzinfo=UTC), datetime(2026, 11, 24, 14, 31, tzinfo=UTC), True),  # open
        (
            datetime(2026, 11, 26, 0, 0, tzinfo=UTC),
            datetime(2026, 11, 27, 0, 0, tzinfo=UTC),
            False,
        ),  # holiday
    ],
)
def test_traded_between_follows_the_exchange_calendar(start: datetime, end: datetime, traded: bool) -> None:
    assert ready.traded_between(["XNYS", "XNAS"], start, end) is traded
    assert ready.traded_between(["XNYS", "C247"], start, end) is True  # crypto never closes


async def test_ready_names_redis_when_it_is_down(md_dsn: str, conn) -> None:
    await conn.execute(SWEPT, "10 seconds")
    settings = msgspec.structs.replace(get_settings(), redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.json()["not_ready"] == ["redis"]
    assert r.json()["checks"]["redis"].startswith("down")


async def test_ready_names_everything_postgres_takes_down(md_dsn: str) -> None:
    settings = msgspec.structs.replace(get_settings(), database_url="postgresql://postgres@127.0.0.1:1/none")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["not_ready"] == ["postgres", "live_feed", "sweep"]
    assert body["checks"]["sweep"].startswith("unknown")
