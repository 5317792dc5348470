"""Fan-out: several clients, a slow client, a stalled client, reconnects, two API processes.

Notifications are real `pg_notify`s on md_bars / md_quotes (from the ingest write path or in
its payload shape), delivered through each app's LISTEN connection.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import websockets
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.ws.limits import WsLimits
from market_data.ingest.pit_write import write_bars
from market_data.settings import get_settings
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import (
    close_of,
    connect,
    live_server,
    metric_value,
    notify_bar,
    notify_quote,
    recv,
    recv_until,
    subscribe,
    wait_until,
)


async def test_several_clients_each_get_exactly_their_messages_in_order(conn) -> None:
    wanted = {
        "aapl": {"bars": ["AAPL"]},
        "msft": {"bars": ["MSFT"], "quotes": ["MSFT"]},
        "both": {"bars": ["AAPL", "MSFT"]},
        "all": {"bars": ["*"], "quotes": ["*"]},
    }
    async with live_server() as server:
        clients = {name: await connect(server) for name in wanted}
        for name, ws in clients.items():
            await subscribe(ws, **wanted[name])
        assert metric_value(
            (await httpx.AsyncClient().get(server.http("/metrics"))).text, "ws_clients_gauge"
        ) == len(clients)
        sent: list[tuple[str, str, int]] = []
        for seq in range(30):
            symbol = ("AAPL", "MSFT", "NVDA")[seq % 3]
            if seq % 5 == 4:
                await notify_quote(conn, symbol, seq)
                sent.append(("quote", symbol, seq))
            else:
                await notify_bar(conn, symbol, seq)
                sent.append(("bar", symbol, seq))

        def expected(name: str) -> list[int]:
            spec = wanted[name]
            return [
                seq
                for kind, sym, seq in sent
                if any(p in ("*", sym) for p in spec.get("bars" if kind == "bar" else "quotes", []))
            ]

        for name, ws in clients.items():
            want = expected(name)
            got = [(await recv(ws))["seq"] for _ in want]
            assert got == want, name
            await ws.close()


async def test_a_slow_client_loses_its_oldest_messages_and_does_not_delay_the_others(conn) -> None:
    limits = WsLimits(max_backlog=20, stall_seconds=60, max_drops_in_window=10**6)
    n, pad = 800, 6000  # ~5 MB: more than the kernel buffers hold for a reader that never reads
    async with live_server(limits) as server:
        slow = await connect(server, stalled=True)
        fast = [await connect(server) for _ in range(3)]
        for ws in (slow, *fast):
            await subscribe(ws, bars=["AAPL"])

        latencies: list[float] = []

        async def read_all(ws: websockets.ClientConnection) -> list[int]:
            seqs = []
            while len(seqs) < n:
                m = await recv(ws, within=10)
                latencies.append(time.time() - m["notified_at"])
                seqs.append(m["seq"])
            return seqs

        readers = [asyncio.create_task(read_all(ws)) for ws in fast]
        for seq in range(n):
            await notify_bar(conn, "AAPL", seq, pad=pad)
            if seq % 10 == 9:
                await asyncio.sleep(0.005)
        results = await asyncio.wait_for(asyncio.gather(*readers), 30)
        # the fast clients got everything, in order, promptly
        assert all(r == list(range(n)) for r in results)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)]
        assert p99 < 0.5, f"fast clients' p99 {p99 * 1000:.0f} ms"

        (slow_session,) = [s for s in server.hub.sessions if s.dropped]
        assert slow_session.dropped > 0 and len(slow_session.data) == limits.max_backlog
        metrics = (await httpx.AsyncClient().get(server.http("/metrics"))).text
        assert (
            metric_value(metrics, "ws_dropped_messages_total") == server.hub.dropped == slow_session.dropped
        )

        # when the slow client reads again: what the buffers held, a gap, then the newest messages
        seqs = []
        while not seqs or seqs[-1] != n - 1:
            seqs.append((await recv(slow, within=10))["seq"])
        assert seqs == sorted(seqs) and len(seqs) < n
        assert seqs[-limits.max_backlog :] == list(range(n - limits.max_backlog, n))
        for ws in (slow, *fast):
            await ws.close()


async def test_a_stalled_client_is_closed_with_a_reason(conn) -> None:
    limits = WsLimits(max_backlog=50, stall_seconds=0.5, watchdog_seconds=0.05)
    async with live_server(limits) as server:
        stalled = await connect(server, stalled=True)
        other = await connect(server)
        await subscribe(stalled, bars=["AAPL"])
        await subscribe(other, bars=["AAPL"])
        assert len(server.hub.sessions) == 2

        async def read_other() -> list[int]:
            return [(await recv_until(other, "bar"))["seq"] for _ in range(800)]

        reader = asyncio.create_task(read_other())
        for seq in range(800):
            await notify_bar(conn, "AAPL", seq, pad=6000)
        await wait_until(lambda: len(server.hub.sessions) == 1, 15, "the stalled client to be closed")
        code, reason, read = await close_of(stalled)
        assert code == 4008 and reason.startswith("too slow: nothing read for 0.5 s")
        assert 0 < read < 800
        # the client that reads is unaffected
        assert await asyncio.wait_for(reader, 15) == list(range(800))
        await other.close()


async def test_a_client_that_keeps_losing_messages_is_closed(conn) -> None:
    limits = WsLimits(max_backlog=5, max_drops_in_window=50, stall_seconds=60)
    async with live_server(limits) as server:
        slow = await connect(server, stalled=True)
        await subscribe(slow, bars=["AAPL"])
        for seq in range(1200):
            await notify_bar(conn, "AAPL", seq, pad=6000)
            if not server.hub.sessions:
                break
        await wait_until(lambda: not server.hub.sessions, 10, "the lagging client to be closed")
        code, reason, _ = await close_of(slow)
        assert code == 4008 and "messages dropped within 30 s" in reason


async def test_reconnect_gets_a_fresh_snapshot_then_live_updates(conn) -> None:
    bars = session_bars("AAPL", minutes=10)
    await write_bars(conn, bars[:5], policy_version=1, advance_cursors=True)
    async with live_server() as server:
        ws = await connect(server, "/ws/AAPL")
        await recv(ws)
        snap = await recv(ws)
        assert snap["bars"][0]["ts"].startswith("2026-11-23T14:34:00")
        await write_bars(conn, bars[5:6], policy_version=1, advance_cursors=True)
        assert (await recv(ws))["ts"].startswith("2026-11-23T14:35:00")
        await ws.close()
        await wait_until(lambda: not server.hub.sessions, 5, "the session to end")

        received = server.hub.received
        await write_bars(conn, bars[6:8], policy_version=1, advance_cursors=True)  # while away
        # snapshots come from the latest-value cache, current once the write's notification is in
        await wait_until(lambda: server.hub.received > received, 5, "the write's notification")
        ws = await connect(server, "/ws/AAPL")
        await recv(ws)
        snap = await recv(ws)
        assert snap["type"] == "snapshot" and snap["bars"][0]["ts"].startswith("2026-11-23T14:37:00")
        await write_bars(conn, bars[8:9], policy_version=1, advance_cursors=True)
        live = await recv(ws)
        # the notifications of the bars written while away may still be on their way (a busy
        # machine): they repeat what the snapshot covers, which the protocol allows
        while live["type"] == "bar" and live["ts"] < "2026-11-23T14:38:00":
            assert live["ts"] <= snap["bars"][0]["ts"], live
            live = await recv(ws)
        assert live["type"] == "bar" and live["ts"].startswith("2026-11-23T14:38:00")
        await ws.close()


async def test_two_api_instances_both_receive_the_same_notification(conn) -> None:
    async with live_server() as one, live_server() as two:
        a, b = await connect(one), await connect(two)
        await subscribe(a, bars=["AAPL"])
        await subscribe(b, bars=["AAPL"], quotes=["AAPL"])
        await write_bars(conn, session_bars("AAPL", minutes=1), policy_version=1, advance_cursors=True)
        got_a, got_b = await recv(a), await recv(b)
        assert got_a == got_b and got_a["type"] == "bar" and got_a["symbol"] == "AAPL"
        await notify_quote(conn, "AAPL", 1)
        assert (await recv(b))["seq"] == 1
        for ws in (a, b):
            await ws.close()


async def test_a_lost_listen_connection_is_restored_and_clients_resync(conn) -> None:
    async with live_server() as server:
        backend = server.hub.backend
        assert backend is not None
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL"])
        live = backend._live
        assert live is not None
        await conn.execute("SELECT pg_terminate_backend($1)", live.get_server_pid())
        resync = await recv_until(ws, "resync", within=10)
        assert "interrupted" in resync["reason"]
        assert (await recv_until(ws, "snapshot"))["bars"] == []
        assert backend.listening and backend.reconnects >= 1
        await notify_bar(conn, "AAPL", 42)
        assert (await recv_until(ws, "bar"))["seq"] == 42
        await ws.close()


async def test_the_app_starts_without_postgres_and_reports_the_feed_down(md_dsn: str) -> None:
    settings = msgspec.structs.replace(get_settings(), database_url="postgresql://postgres@127.0.0.1:1/none")
    async with AsyncTestClient(app=create_app(settings)) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["live_feed"].startswith("down")
