"""api/http_protocol.py: a response leaves in one send, and nothing is lost, reordered or held.

The server tests run uvicorn itself (its httptools protocol, real sockets, the tests' loop) with a
transport that counts the sends reaching the socket; `HttpToolsProtocol` is the control that
shows what the plain protocol does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect

from api.http_protocol import SEND_AT, CombinedWrites, OneSendHttpProtocol

BIG = 3 * SEND_AT + 123


class Recorder(asyncio.Transport):
    """The socket's side of a transport: what was sent, in which sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "a write after close"
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_the_writes_of_one_turn_are_one_send_at_its_end() -> None:
    rec = Recorder()
    t = CombinedWrites(rec, asyncio.get_running_loop())
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(bytearray(b"{}"))
    t.write(b"")
    assert rec.sends == []
    assert t.get_write_buffer_size() == 7 + 40
    await _turn()
    assert rec.sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    await _turn()
    assert rec.sends[1:] == [b"next"]


async def test_a_large_write_is_sent_at_once_after_what_was_held() -> None:
    rec = Recorder()
    t = CombinedWrites(rec, asyncio.get_running_loop())
    t.write(b"head")
    t.write(b"x" * SEND_AT)
    assert rec.sends == [b"head" + b"x" * SEND_AT]
    t.write(b"tail")
    await _turn()
    assert rec.sends[1:] == [b"tail"]


async def test_close_and_eof_send_what_is_held_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    rec = Recorder()
    t = CombinedWrites(rec, loop)
    t.write(b"bye")
    t.close()
    assert rec.sends == [b"bye"] and rec.closed
    await _turn()  # the end of the turn finds nothing left, and writes nothing after close
    assert rec.sends == [b"bye"]

    rec = Recorder()
    t = CombinedWrites(rec, loop)
    t.writelines([b"a", b"b"])
    t.write_eof()
    assert rec.sends == [b"ab"] and rec.eof

    rec = Recorder()
    t = CombinedWrites(rec, loop)
    t.write(b"lost")
    t.abort()
    await _turn()
    assert rec.sends == [] and rec.aborted


async def test_bytes_held_when_the_peer_went_away_are_dropped_not_raised() -> None:
    rec = Recorder()
    t = CombinedWrites(rec, asyncio.get_running_loop())
    t.write(b"late")
    rec.closed = True  # connection_lost closed it under us
    await _turn()
    assert rec.sends == []
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the real transport's


# ------------------------------------------------------------------------------------------------
# through uvicorn
# ------------------------------------------------------------------------------------------------
class Counted(asyncio.Transport):
    """A real transport whose sends are counted (the counting sits under CombinedWrites)."""

    sends = 0

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        super().__init__()
        self._t: Any = transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        Counted.sends += 1
        self._t.write(data)


def _delegate(name: str) -> Any:
    def method(self: Counted, *args: Any) -> Any:
        return getattr(self._t, name)(*args)

    return method


# everything else uvicorn and the WebSocket protocol call goes to the real transport
for _name in (
    "writelines", "is_closing", "close", "abort", "write_eof", "can_write_eof", "get_extra_info",
    "pause_reading", "resume_reading", "is_reading", "set_protocol", "get_protocol",
    "get_write_buffer_size", "get_write_buffer_limits", "set_write_buffer_limits",
):  # fmt: skip
    setattr(Counted, _name, _delegate(_name))


class CountedOneSend(OneSendHttpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(Counted(transport))


class CountedPlain(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(Counted(transport))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (msg := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo " + msg["text"]})
        return
    path = scope["path"]
    if path == "/big":  # streamed in chunks, the last two in one turn
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"0123456789" * (SEND_AT // 10)
        sent = 0
        while sent < BIG:
            part = chunk[: BIG - sent]
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": sent < BIG})
            await asyncio.sleep(0)
        return
    body = b'{"path": "%s"}' % path.encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    status = 404 if path == "/missing" else 200
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(protocol: type[asyncio.Protocol]) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(("protocol", "sends_per_response"), [(CountedOneSend, 1), (CountedPlain, 2)])
async def test_each_small_response_reaches_the_socket_in_one_send(
    protocol: type[asyncio.Protocol], sends_per_response: int
) -> None:
    Counted.sends = 0
    async with serving(protocol) as addr, httpx.AsyncClient(base_url=f"http://{addr}") as client:
        for i in range(50):
            r = await client.get(f"/p{i}")
            assert r.status_code == 200 and r.json() == {"path": f"/p{i}"}
        missing = await client.get("/missing")
        assert missing.status_code == 404 and missing.json() == {"path": "/missing"}
        head = await client.head("/h")
        assert head.status_code == 200 and head.content == b""
    assert Counted.sends == 51 * sends_per_response + 1  # HEAD: a head and no body


async def test_a_streamed_body_arrives_whole_and_in_order() -> None:
    async with serving(CountedOneSend) as addr, httpx.AsyncClient(base_url=f"http://{addr}") as client:
        r = await client.get("/big")
        assert r.status_code == 200
        chunk = b"0123456789" * (SEND_AT // 10)
        assert r.content == (chunk * (BIG // len(chunk) + 1))[:BIG]
        again = await client.get("/after")  # the connection is still in step
        assert again.json() == {"path": "/after"}


async def test_a_websocket_upgrade_gets_the_connection_s_own_transport() -> None:
    async with serving(CountedOneSend) as addr:
        async with connect(f"ws://{addr}/ws") as ws:
            for i in range(3):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"echo m{i}"
