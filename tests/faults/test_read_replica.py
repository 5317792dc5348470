"""Reads from a real streaming standby (DATABASE_READ_URL): what goes where, lag, and failures.

A private primary and a hot standby made from it with `pg_basebackup -R` (tests/faults/
servers.py) on ports of their own; the API runs as a real uvicorn server with real HTTP and
WebSockets. Which server answered is told apart by pausing the standby's replay
(`pg_wal_replay_pause()`): from then on it holds the old data while the primary has the new.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import websockets

from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.records import Bar, Quote, utcnow
from market_data.settings import Settings, get_settings
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import LiveServer, live_server, metric_samples, subscribe
from tests.conftest import CLEAN_TABLES
from tests.faults.conftest import DEFAULT_POLICY, _prepare_database
from tests.faults.servers import PrivatePostgres, PrivateStandby

HISTORY = "/stocks/AAPL/history"
RANGE = {"interval": "1m", "start": "2026-11-23T14:30:00Z", "end": "2026-11-23T14:33:00Z"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[PrivatePostgres, PrivateStandby]]:
    """A primary with the market_data database, and a streaming hot standby of it."""
    primary = PrivatePostgres()
    standby: PrivateStandby | None = None
    try:
        primary.initdb()
        primary.start()
        asyncio.run(_prepare_database(primary.dsn("market_data")))
        standby = PrivateStandby(primary)
        standby.basebackup()
        standby.start()
        yield primary, standby
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


@pytest.fixture
async def servers(
    cluster: tuple[PrivatePostgres, PrivateStandby],
) -> AsyncIterator[tuple[PrivatePostgres, PrivateStandby]]:
    """Both running, replay on, empty data tables on both."""
    primary, standby = cluster
    primary.start()
    standby.start()
    conn = await asyncpg.connect(primary.dsn("market_data"))
    try:
        await conn.execute(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    async with standby_conn(standby) as s:
        await s.execute("SELECT pg_wal_replay_resume()")
    await caught_up(primary, standby)
    yield primary, standby
    primary.start()
    standby.start()


def api_settings(primary: PrivatePostgres, standby: PrivatePostgres, max_lag: float) -> Settings:
    return msgspec.structs.replace(
        get_settings(),
        database_url=primary.dsn("market_data"),
        database_read_url=standby.dsn("market_data"),
        database_read_max_lag=max_lag,
    )


class standby_conn:
    """`async with standby_conn(s) as conn`: a connection to the standby's market_data."""

    def __init__(self, standby: PrivatePostgres) -> None:
        self.dsn = standby.dsn("market_data")

    async def __aenter__(self) -> asyncpg.Connection:
        self.conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def caught_up(primary: PrivatePostgres, standby: PrivatePostgres, within: float = 30) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    p = await asyncpg.connect(primary.dsn("market_data"))
    try:
        target = await p.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await p.close()
    deadline = time.monotonic() + within
    async with standby_conn(standby) as s:
        while not await s.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target):
            assert time.monotonic() < deadline, "the standby did not catch up"
            await asyncio.sleep(0.05)


async def store_quote(primary: PrivatePostgres, last: float) -> None:
    conn = await asyncpg.connect(primary.dsn("market_data"))
    try:
        quote = Quote(symbol="AAPL", ts=utcnow(), provider="synthetic", last=last)
        await write_quotes(conn, [quote], policy_version=1)
    finally:
        await conn.close()


async def seed(primary: PrivatePostgres, standby: PrivatePostgres, last: float = 100.0) -> list[Bar]:
    """Three AAPL bars (cursors advanced: a recent sweep) and a quote, replayed by the standby."""
    bars = session_bars("AAPL", minutes=3)
    conn = await asyncpg.connect(primary.dsn("market_data"))
    try:
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    finally:
        await conn.close()
    await store_quote(primary, last)
    await caught_up(primary, standby)
    return bars


async def ready(http: httpx.AsyncClient, api: LiveServer) -> tuple[int, dict[str, Any]]:
    r = await http.get(api.http("/ready"))
    return r.status_code, r.json()


async def until_replica(http: httpx.AsyncClient, api: LiveServer, prefix: str, within: float = 20) -> dict:  # type: ignore[type-arg]
    """Until /ready's `checks.replica` starts with `prefix`; the report."""
    deadline = time.monotonic() + within
    while True:
        _, body = await ready(http, api)
        if body["checks"]["replica"].startswith(prefix):
            return body
        assert time.monotonic() < deadline, f"replica never {prefix!r}: {body}"
        await asyncio.sleep(0.1)


async def price(http: httpx.AsyncClient, api: LiveServer) -> float:
    r = await http.get(api.http("/stocks/AAPL/price"))
    assert r.status_code == 200, r.text
    return float(r.json()["price"])


def gauges(text: str) -> dict[str, float]:
    return {name: value for (name, labels), value in metric_samples(text).items() if not labels}


# ------------------------------------------------------------------------------------------------
async def test_reads_go_to_the_standby_and_ops_and_snapshots_to_the_primary(servers) -> None:
    primary, standby = servers
    bars = await seed(primary, standby)
    conn = await asyncpg.connect(primary.dsn("market_data"))
    try:
        async with (
            live_server(settings=api_settings(primary, standby, max_lag=60)) as api,
            httpx.AsyncClient(timeout=10) as http,
        ):
            body = await until_replica(http, api, "ok")
            assert body["replica"]["serving_reads"] is True and body["replica"]["lag_bytes"] == 0
            assert await price(http, api) == 100.0
            async with standby_conn(standby) as s:
                await s.execute("SELECT pg_wal_replay_pause()")
            # the primary moves on, the monitor sees it, then a corrected bar is stored
            await store_quote(primary, 200.0)
            behind = await until_replica(http, api, "ok")
            deadline = time.monotonic() + 10
            while not (behind["replica"]["lag_bytes"] or 0) > 0:
                assert time.monotonic() < deadline, behind
                behind = await until_replica(http, api, "ok")
            caught_up_to = behind["replica"]["caught_up_to"]
            fixed = msgspec.structs.replace(bars[1], close=bars[1].close + 1.0)
            await write_bars(conn, [fixed], policy_version=1, advance_cursors=False)
            fixed_as_of = await conn.fetchval(
                "SELECT max(as_of) FROM bars WHERE symbol = 'AAPL' AND ts = $1", fixed.ts
            )

            # /price comes from the latest-value cache, which the primary's feed keeps current
            assert await price(http, api) == 200.0
            # standby-tolerant reads: the standby's (older) data
            r = (await http.get(api.http(HISTORY), params=RANGE)).json()
            assert [b["close"] for b in r["bars"]] == [b.close for b in bars]
            # pinned where the standby is complete, before the correction: a true point in time
            assert r["as_of"] <= caught_up_to and r["as_of"] < fixed_as_of.isoformat()
            again = (await http.get(api.http(HISTORY), params={**RANGE, "as_of": r["as_of"]})).json()
            assert again["bars"] == r["bars"]
            # a read pinned after what the standby holds goes to the primary
            at_now = {**RANGE, "as_of": utcnow().isoformat()}
            now = (await http.get(api.http(HISTORY), params=at_now)).json()
            assert now["bars"][1]["close"] == fixed.close

            # the WebSocket snapshot is the primary's: the live feed it precedes is the primary's
            ws = await websockets.connect(api.url("/ws"), compression=None, ping_interval=None)
            _, snapshot = await subscribe(ws, quotes=["AAPL"])
            assert snapshot["quotes"][0]["last"] == 200.0
            await ws.close()

            # ops write to the primary and read what they wrote at once
            token = get_settings().ops_token
            auth = {"Authorization": f"Bearer {token}"}
            before = (await http.get(api.http("/ops/policy"), headers=auth)).json()["version"]["version"]
            body_text = DEFAULT_POLICY.replace('description = "', 'description = "replica test: ', 1)
            r2 = await http.post(api.http("/ops/reload"), json={"policy": body_text}, headers=auth)
            assert r2.status_code in (200, 201), r2.text
            active = (await http.get(api.http("/ops/policy"), headers=auth)).json()
            assert active["version"]["version"] == before + 1
            async with standby_conn(standby) as s:  # the paused standby has not seen it
                assert await s.fetchval("SELECT max(version) FROM policy_versions") == before

            async with standby_conn(standby) as s:
                await s.execute("SELECT pg_wal_replay_resume()")
            deadline = time.monotonic() + 20
            while await price(http, api) != 200.0:
                assert time.monotonic() < deadline, "reads never saw the replayed quote"
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_a_standby_behind_by_more_than_the_limit_leaves_reads_to_the_primary(servers) -> None:
    primary, standby = servers
    await seed(primary, standby)  # with a recent sweep: /ready has nothing but the replica to judge
    async with (
        live_server(settings=api_settings(primary, standby, max_lag=1.5)) as api,
        httpx.AsyncClient(timeout=10) as http,
    ):
        await until_replica(http, api, "ok")
        async with standby_conn(standby) as s:
            await s.execute("SELECT pg_wal_replay_pause()")
        await store_quote(primary, 300.0)
        body = await until_replica(http, api, "degraded", within=15)
        status, body = await ready(http, api)
        assert status == 200 and body["status"] == "ready", body  # the primary serves: still ready
        assert body["replica"]["state"] == "behind" and body["replica"]["lag_seconds"] > 1.5
        assert "reads go to the primary" in body["checks"]["replica"]
        assert await price(http, api) == 300.0
        metrics = gauges((await http.get(api.http("/metrics"))).text)
        assert metrics["database_replica_up"] == 1 and metrics["database_replica_serving_reads"] == 0
        assert metrics["database_replica_lag_seconds"] > 1.5 and metrics["database_replica_lag_bytes"] > 0
        async with standby_conn(standby) as s:
            await s.execute("SELECT pg_wal_replay_resume()")
        body = await until_replica(http, api, "ok", within=15)
        assert body["replica"]["serving_reads"] is True


async def test_the_api_keeps_answering_from_the_primary_when_the_standby_is_killed(servers) -> None:
    primary, standby = servers
    bars = await seed(primary, standby)
    async with (
        live_server(settings=api_settings(primary, standby, max_lag=60)) as api,
        httpx.AsyncClient(timeout=10) as http,
    ):
        await until_replica(http, api, "ok")
        assert await price(http, api) == 100.0
        r = await http.get(api.http(HISTORY), params=RANGE)  # the standby's pool holds connections now
        assert r.status_code == 200
        standby.kill()
        # at once, before any check notices: the reads that fail on the standby run on the primary
        for _ in range(20):
            assert await price(http, api) == 100.0
            r = await http.get(api.http(HISTORY), params=RANGE)
            assert r.status_code == 200 and len(r.json()["bars"]) == 3
        body = await until_replica(http, api, "degraded: down")
        status, body = await ready(http, api)
        assert status == 200 and body["replica"]["serving_reads"] is False
        metrics = gauges((await http.get(api.http("/metrics"))).text)
        assert metrics["database_replica_up"] == 0 and metrics["database_replica_serving_reads"] == 0

        standby.start()
        await until_replica(http, api, "ok", within=30)
        # and it serves again: paused, it answers with what it had
        async with standby_conn(standby) as s:
            await s.execute("SELECT pg_wal_replay_pause()")
        conn = await asyncpg.connect(primary.dsn("market_data"))
        try:
            fixed = msgspec.structs.replace(bars[1], close=bars[1].close + 1.0)
            await write_bars(conn, [fixed], policy_version=1, advance_cursors=False)
        finally:
            await conn.close()
        r = await http.get(api.http(HISTORY), params=RANGE)
        assert [b["close"] for b in r.json()["bars"]] == [b.close for b in bars]
        async with standby_conn(standby) as s:
            await s.execute("SELECT pg_wal_replay_resume()")


async def test_reads_are_served_by_the_standby_while_the_primary_is_down(servers) -> None:
    primary, standby = servers
    await store_quote(primary, 100.0)
    await caught_up(primary, standby)
    async with (
        live_server(settings=api_settings(primary, standby, max_lag=60)) as api,
        httpx.AsyncClient(timeout=10) as http,
    ):
        await until_replica(http, api, "ok")
        primary.kill()
        assert await price(http, api) == 100.0
        body = await until_replica(http, api, "ok: serving reads while the primary does not answer")
        status, body = await ready(http, api)
        assert status == 503 and "postgres" in body["not_ready"]  # the primary is what is down
        primary.start()
        await until_replica(http, api, "ok: ", within=30)
        await store_quote(primary, 500.0)
        deadline = time.monotonic() + 20
        while await price(http, api) != 500.0:
            assert time.monotonic() < deadline, "the standby never streamed again after the primary's restart"
            await asyncio.sleep(0.1)


async def test_a_read_url_that_is_not_a_standby_serves_no_reads(servers) -> None:
    primary, _ = servers
    await store_quote(primary, 100.0)
    settings = api_settings(primary, primary, max_lag=60)  # the primary itself: not in recovery
    async with live_server(settings=settings) as api, httpx.AsyncClient(timeout=10) as http:
        body = await until_replica(http, api, "degraded: not a standby")
        assert body["replica"]["state"] == "not_standby" and "replica" not in body["not_ready"]
        assert await price(http, api) == 100.0
