"""The latest-value cache of /price, /snapshots and WebSocket snapshots (api/stocks/latest.py).

Each test warms the cache first (a read), then changes the store in a way a naive cache would
miss: a revision of the bar it holds, a write whose notification the process never received
(its LISTEN connection was terminated), a read pinned at an earlier `as_of`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import msgspec

from api.ws import feed
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.records import Quote
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import LiveServer, connect, live_server, subscribe, wait_until


async def _written(server: LiveServer, conn, bars) -> None:
    """Write `bars` through the ingest path and wait until `server` has its notifications."""
    before = server.hub.received
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    await wait_until(lambda: server.hub.received > before, 5, "the write's notification")


async def _price(http: httpx.AsyncClient, server: LiveServer, query: str = "") -> dict:
    r = await http.get(server.http(f"/stocks/AAPL/price{query}"))
    assert r.status_code == 200, r.text
    body: dict = r.json()
    return body


async def test_a_revision_replaces_the_cached_bar_on_price_snapshots_and_ws(conn) -> None:
    bars = session_bars("AAPL", minutes=5)
    async with live_server() as server, httpx.AsyncClient() as http:
        await _written(server, conn, bars)
        assert (await _price(http, server))["price"] == bars[-1].close  # cached now
        assert server.app.state.resources.latest.serving
        corrected = msgspec.structs.replace(
            bars[-1], close=round(bars[-1].close * 1.002, 4), volume=bars[-1].volume + 7
        )
        await _written(server, conn, [corrected])

        assert (await _price(http, server))["price"] == corrected.close
        snap = (await http.get(server.http("/stocks/snapshots?symbols=AAPL"))).json()["snapshots"]["AAPL"]
        assert (
            snap["minute_bar"]["close"] == corrected.close
            and snap["minute_bar"]["volume"] == corrected.volume
        )
        ws = await connect(server)
        _, snapshot = await subscribe(ws, bars=["AAPL"])
        (entry,) = snapshot["bars"]
        assert entry["close"] == corrected.close and entry["version"] == 2 and entry["revision"] is True
        await ws.close()


async def test_a_write_missed_while_listen_was_down_is_served_after_the_reconnect(conn) -> None:
    bars = session_bars("AAPL", minutes=5)
    async with live_server() as server, httpx.AsyncClient() as http:
        await _written(server, conn, bars)
        assert (await _price(http, server))["price"] == bars[-1].close  # cached now
        backend = server.hub.backend
        assert backend is not None
        listener_pid = backend._live.get_server_pid()  # type: ignore[union-attr]
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", listener_pid)
        # a write whose notification this process never receives: made while it does not listen
        # (stored by plain SQL, so no notification exists whatever the timing)
        ts = bars[-1].ts + timedelta(minutes=1)
        await conn.execute(
            """INSERT INTO bars (symbol, interval, ts, as_of, provider, status, open, high, low, close,
                                 volume, vwap, trade_count, policy_version)
               VALUES ('AAPL', '1m', $1, now(), 'synthetic', 'final', 1, 2, 0.5, 1.5, 10, 1.2, 3, 1)""",
            ts,
        )
        await wait_until(lambda: backend.reconnects >= 1 and backend.listening, 20, "LISTEN to be restored")

        price = await _price(http, server)
        assert price["price"] == 1.5 and price["ts"].startswith(
            (ts + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
        )
        snap = (await http.get(server.http("/stocks/snapshots?symbols=AAPL"))).json()["snapshots"]["AAPL"]
        assert snap["minute_bar"]["close"] == 1.5


async def test_a_read_with_as_of_bypasses_the_cache(conn) -> None:
    bars = session_bars("AAPL", minutes=5)
    async with live_server() as server, httpx.AsyncClient() as http:
        await _written(server, conn, bars)
        assert (await _price(http, server))["price"] == bars[-1].close  # cached now
        between = await conn.fetchval("SELECT clock_timestamp()")
        corrected = msgspec.structs.replace(bars[-1], close=round(bars[-1].close * 1.002, 4))
        await _written(server, conn, [corrected])

        assert (await _price(http, server))["price"] == corrected.close
        assert (await _price(http, server, f"?as_of={between.isoformat().replace('+', '%2B')}"))[
            "price"
        ] == bars[-1].close
        r = await http.get(server.http("/stocks/AAPL/price?as_of=2000-01-01T00:00:00Z"))
        assert r.status_code == 404  # nothing was stored yet then


async def test_each_api_process_keeps_its_own_cache_current(conn) -> None:
    bars = session_bars("AAPL", minutes=6)
    async with live_server() as one, live_server() as two, httpx.AsyncClient() as http:
        await write_bars(conn, bars[:5], policy_version=1, advance_cursors=True)
        for server in (one, two):
            assert (await _price(http, server))["price"] == bars[4].close
        before = (one.hub.received, two.hub.received)
        await write_bars(conn, bars[5:], policy_version=1, advance_cursors=True)
        await wait_until(
            lambda: one.hub.received > before[0] and two.hub.received > before[1],
            5,
            "both processes notified",
        )
        for server in (one, two):
            assert (await _price(http, server))["price"] == bars[5].close


async def test_a_notification_dropped_from_a_full_feed_backlog_is_not_left_stale(conn, monkeypatch) -> None:
    """The feed keeps the newest FEED_BACKLOG notifications the hub has not read: a burst larger
    than that drops the oldest, here the one that updates the cached bar."""
    monkeypatch.setattr(feed, "FEED_BACKLOG", 8)
    bars = session_bars("AAPL", minutes=6)
    async with live_server() as server, httpx.AsyncClient() as http:
        await _written(server, conn, bars[:5])
        assert (await _price(http, server))["price"] == bars[4].close  # cached now
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL"])
        start = bars[5].ts
        burst = [
            Quote(symbol="MSFT", ts=start + timedelta(seconds=i), provider="synthetic", last=100.0 + i)
            for i in range(40)
        ]
        before = server.hub.received
        async with conn.transaction():  # delivered together at commit: the bar's first
            await write_bars(conn, bars[5:], policy_version=1, advance_cursors=True)
            await write_quotes(conn, burst, policy_version=1)
        await wait_until(lambda: server.hub.received > before, 5, "the burst")
        await wait_until(lambda: not server.hub.feed_overflowing, 5, "the hub to catch up")

        assert server.hub.received - before < len(burst) + 1  # some were dropped indeed
        assert (await _price(http, server))["price"] == bars[5].close
        assert server.hub.feed_overflows == 1
        # the WebSocket client is told it may have missed updates, with a fresh snapshot
        seen = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        assert seen[0]["type"] == "resync", seen
        assert seen[1]["type"] == "snapshot" and seen[1]["bars"][0]["close"] == bars[5].close, seen
        await ws.close()
