"""WebSocket abuse while a well-behaved client listens: it must not notice.

A bystander subscribes to AAPL bars and receives a numbered stream of notifications the
whole time, while other connections from the same address
- send 600 generated malformed frames (JSON of every shape, deep nesting, huge numbers,
  control characters, non-UTF-8 binary): each is answered with an error naming the field,
  the connection stays open (a ping after every frame is answered);
- send frames over the size limit (4 KiB + 1, 64 KiB, 1 MiB): closed with 1009 and a reason;
- flood subscribe requests: refused with `rate_limited`, then closed with 1008;
- open connections past the per-address limit: the extra ones are closed with 1008.
The bystander gets every notification, in order, none dropped, and the server logs no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any

import websockets

from api.ws.limits import WsLimits
from tests.api.ws_harness import close_of, connect, live_server, notify_bar, recv, send, subscribe

log = logging.getLogger(__name__)
FRAMES = 600
SERVER_TYPES = {"error", "pong", "subscribed", "snapshot", "unsubscribed", "heartbeat", "resync"}


def garbage(rng: random.Random) -> str | bytes:
    """One malformed (or occasionally valid) client frame."""

    def value(depth: int = 0) -> Any:
        choices = [
            lambda: None,
            lambda: rng.choice([True, False]),
            lambda: rng.randint(-(2**70), 2**70),
            lambda: rng.choice([0.5, -1e308, 1e-320]),
            lambda: "".join(
                rng.choice("AZaz09.*-_ \u00e9\u4e2d\u0000\u202e") for _ in range(rng.randrange(20))
            ),
            lambda: rng.choice(["AAPL", "*", "BRK.*", "aapl", "1m", "7m", "subscribe", "x" * 100]),
            lambda: rng.choice(["subscribe", "unsubscribe", "ping", "SUBSCRIBE", "publish", ""]),
            lambda: [value(depth + 1) for _ in range(rng.randrange(5))],
            lambda: {
                rng.choice(["action", "bars", "quotes", "intervals", "id", "all", "x"]): value(depth + 1)
            },
        ]
        return choices[rng.randrange(len(choices) if depth < 3 else 7)]()

    pick = rng.randrange(8)
    if pick == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))  # binary, not UTF-8
    if pick == 1:
        return "[" * 500 + "]" * 500  # deep nesting
    if pick == 2:
        return rng.choice(
            ['{"action": "ping", "id": 1e999999}', '{"action": 1e400}', "nan", "{", '"\\ud800"', ""]
        )
    if pick == 3:
        return json.dumps([value() for _ in range(3)])
    obj = {
        k: value()
        for k in rng.sample(
            ["action", "bars", "quotes", "intervals", "id", "all", "extra"], rng.randrange(1, 5)
        )
    }
    return json.dumps(obj)[:4000]


async def stream(conn, stop: asyncio.Event, sent: list[int]) -> None:
    """Numbered AAPL notifications every 20 ms until stopped."""
    seq = 0
    while not stop.is_set():
        await notify_bar(conn, "AAPL", seq)
        sent.append(seq)
        seq += 1
        await asyncio.sleep(0.02)


async def listen(ws, received: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            message = await recv(ws, within=0.5)
        except TimeoutError:
            continue
        if message["type"] == "bar":
            received.append(message["volume"])  # the harness puts the sequence number there
        elif message["type"] == "heartbeat":
            assert message["dropped"] == 0


async def malformed_frames(server, rng: random.Random) -> int:
    ws = await connect(server)
    answered = 0
    for i in range(FRAMES):
        frame = garbage(rng)
        await ws.send(frame)
        await send(ws, {"action": "ping", "id": f"after-{i}"})
        while True:
            message = await recv(ws, within=5)
            assert message["type"] in SERVER_TYPES, message
            if message["type"] == "error":
                assert message["detail"].strip() and message["parameter"], message
                answered += 1
            if message == {**message, "type": "pong", "id": f"after-{i}"}:
                break
    await ws.close()
    return answered


async def oversized(server) -> list[tuple[int, str]]:
    closes = []
    for size in (4097, 65_536, 1_048_576):
        ws = await connect(server)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps({"action": "ping", "id": "x" * size}))
        code, reason, _ = await close_of(ws)
        closes.append((code, reason))
    return closes


async def subscribe_flood(server) -> tuple[int, str, int]:
    ws = await connect(server)
    refused = 0
    with contextlib.suppress(websockets.ConnectionClosed):
        for i in range(200):
            await send(ws, {"action": "subscribe", "bars": ["MSFT"], "id": i})
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            message = await recv(ws, within=5)
            refused += message.get("code") == "rate_limited"
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or "", refused


async def too_many_connections(server, limit: int) -> list[tuple[int, str]]:
    opened = [await connect(server) for _ in range(limit)]  # more than are left for this address
    closes = []
    for ws in opened:
        try:
            await send(ws, {"action": "ping"})
            await recv(ws, within=2)
        except websockets.ConnectionClosed:
            closes.append((ws.close_code or 0, ws.close_reason or ""))
    for ws in opened:
        await ws.close()
    return closes


async def test_abuse_is_refused_with_reasons_and_a_bystander_notices_nothing(conn, caplog) -> None:
    caplog.set_level(logging.WARNING)
    limits = WsLimits(max_connections_per_address=8, messages_per_second=5000, message_burst=5000)
    async with live_server(limits) as server:
        bystander = await connect(server)
        await subscribe(bystander, bars=["AAPL"])
        stop, sent, received = asyncio.Event(), [], []
        listener = asyncio.create_task(listen(bystander, received, stop))
        notifier = asyncio.create_task(stream(conn, stop, sent))
        rng = random.Random(20261123)
        answered = await malformed_frames(server, rng)
        closes = await oversized(server)
        # the flood runs with the default request rate limits
        server.hub.limits = WsLimits(max_connections_per_address=8)
        flood_code, flood_reason, refused = await subscribe_flood(server)
        extra = await too_many_connections(server, 8)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(notifier, listener)
        # the bystander's last messages may still be on their way
        deadline = asyncio.get_running_loop().time() + 5
        while len(received) < len(sent) and asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(TimeoutError):
                message = await recv(bystander, within=0.5)
                if message["type"] == "bar":
                    received.append(message["volume"])
        log.info(
            "ws abuse: %d malformed frames (%d errors), %d oversized, flood refused %dx then %s, "
            "%d extra connections closed; bystander got %d/%d notifications",
            FRAMES,
            answered,
            len(closes),
            refused,
            flood_code,
            len(extra),
            len(received),
            len(sent),
        )
        assert answered >= FRAMES * 0.9  # nearly every generated frame is malformed, each got its error
        assert [c for c, _ in closes] == [1009, 1009, 1009] and all(
            "too big" in r or r == "" for _, r in closes
        )
        assert closes[0][1] == "message too big: at most 4096 bytes"
        assert flood_code == 1008 and "too many messages" in flood_reason and refused >= 10
        assert extra and all(c == 1008 and "too many connections from 127.0.0.1" in r for c, r in extra)
        assert received == sent  # every notification, in order, none dropped
        await bystander.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
