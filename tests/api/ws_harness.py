"""Real uvicorn servers (in the test's event loop) and `websockets` clients for the WS tests.

Litestar's test client runs the app in another thread and cannot model a client that stops
reading; a real server on a free port, and a client socket with a tiny receive buffer, can.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import uvicorn
import websockets
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.http_protocol import OneSendHttpProtocol
from api.ws.hub import Hub
from api.ws.limits import WsLimits
from market_data.settings import Settings, get_settings

BASE_TS = "2026-11-23T14:30:00+00:00"


@dataclass
class LiveServer:
    app: Litestar
    port: int

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.ws_hub
        return hub

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def live_server(
    limits: WsLimits | None = None, settings: Settings | None = None, *, port: int = 0
) -> AsyncIterator[LiveServer]:
    """A started API on 127.0.0.1:<port> (default: a free one), listening for notifications;
    stopped on exit (a later server may take the same port: a client reconnecting finds it)."""
    app = create_app(settings or get_settings())
    if limits is not None:
        app.state.ws_hub.limits = limits
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        # served as `python -m api.serve` serves it (its HTTP protocol, no deflate)
        uvicorn.Config(
            app, log_level="warning", ws_per_message_deflate=False, lifespan="on", http=OneSendHttpProtocol
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        live = LiveServer(app, port)
        await wait_until(lambda: server.started and live.hub.listening(), 15, "server start")
        yield live
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 15)
        finally:
            sock.close()


async def wait_until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def connect(
    server: LiveServer, path: str = "/ws", *, stalled: bool = False
) -> websockets.ClientConnection:
    """A client; `stalled`: a tiny receive buffer and a one-message queue, for clients that never read."""
    if not stalled:
        return await websockets.connect(server.url(path), compression=None, ping_interval=None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return await websockets.connect(
        server.url(path), sock=sock, compression=None, ping_interval=None, max_queue=1
    )


async def recv(ws: websockets.ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), within))
    assert isinstance(message, dict)
    return message


async def recv_until(ws: websockets.ClientConnection, kind: str, within: float = 5.0) -> dict[str, Any]:
    """The next message of `type` kind (heartbeats and other types in between are skipped)."""
    deadline = time.monotonic() + within
    while True:
        message = await recv(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


async def send(ws: websockets.ClientConnection, request: dict[str, Any]) -> None:
    await ws.send(json.dumps(request))


async def subscribe(ws: websockets.ClientConnection, **request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send a subscribe; returns (ack, snapshot)."""
    await send(ws, {"action": "subscribe", **request})
    ack = await recv(ws)
    assert ack["type"] == "subscribed", ack
    snap = await recv(ws)
    assert snap["type"] == "snapshot", snap
    return ack, snap


async def close_of(ws: websockets.ClientConnection, within: float = 10.0) -> tuple[int, str, int]:
    """Read until the server closes: (code, reason, messages read before the close)."""
    count = 0
    deadline = time.monotonic() + within
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            count += 1
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code, exc.rcvd.reason, count


NOTIFY_BAR = """
SELECT pg_notify('md_bars', json_build_object(
    'type', 'bar', 'symbol', $1::text, 'interval', $2::text,
    'ts', $3::timestamptz + make_interval(mins => $4::int), 'as_of', clock_timestamp(),
    'provider', 'synthetic', 'open', 1.0, 'high', 1.0, 'low', 1.0, 'close', 1.0, 'volume', $4::int,
    'vwap', 1.0, 'seq', $4::int, 'pad', $5::text,
    'notified_at', extract(epoch FROM clock_timestamp()))::text)"""

NOTIFY_QUOTE = """
SELECT pg_notify('md_quotes', json_build_object(
    'type', 'quote', 'symbol', $1::text, 'ts', now(), 'provider', 'synthetic', 'last', 1.0,
    'bid', 1.0, 'ask', 1.0, 'bid_size', 1, 'ask_size', 1, 'seq', $2::int,
    'notified_at', extract(epoch FROM clock_timestamp()))::text)"""


async def notify_bar(
    conn: asyncpg.Connection, symbol: str, seq: int, *, interval: str = "1m", pad: int = 0
) -> None:
    """One notification shaped like the ingest path's (plus `seq`, and `pad` bytes to fill buffers)."""
    await conn.execute(NOTIFY_BAR, symbol, interval, datetime.fromisoformat(BASE_TS), seq, "x" * pad)


async def notify_quote(conn: asyncpg.Connection, symbol: str, seq: int) -> None:
    await conn.execute(NOTIFY_QUOTE, symbol, seq)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of Prometheus exposition text: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus exposition text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exposed")
