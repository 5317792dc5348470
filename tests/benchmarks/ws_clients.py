"""WebSocket load clients of bench_ws: many connections in one process, latency of every update.

    python -m tests.benchmarks.ws_clients --url ws://127.0.0.1:PORT/ws --plan plan.json \\
        --first 0 --count 500 --ready DIR/c0.ready --out DIR/c0.npz

Each client is a minimal RFC 6455 client on an asyncio Protocol (uvloop): it sends the
upgrade request and one `subscribe` for its symbols (from the plan: a list of symbol lists,
one per client), then parses every frame the server sends. The arrival time is taken once
per `data_received`, before any parsing, so the client's own decoding is not counted; for
each live `bar` the latency is `arrival - notified_at` (`notified_at` is the epoch time
Postgres took in `pg_notify`, in microseconds; the same clock on the same machine). A plain
protocol instead of the `websockets` library keeps the client's CPU per message small, so a
busy client process adds as little delay as possible to what is measured. Pings are
answered (uvicorn pings every 20 s), close frames recorded.

When every client has its snapshot, `--ready` gets a JSON status. On SIGTERM the process
writes `--out` (numpy arrays: seq, latency in ms, client index; and the event loop's lag
samples, which show how late this process itself was) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import struct
import time
from array import array
from pathlib import Path
from typing import Any, cast

import msgspec
import numpy as np

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONNECT_CONCURRENCY = 50
LAG_PROBE_SECONDS = 0.005


class Message(msgspec.Struct):
    """The fields a client looks at; everything else in a message is skipped by the decoder."""

    type: str
    notified_at: float | None = None
    volume: int | None = None
    """The publisher's sequence number of a live bar."""


DECODE = msgspec.json.Decoder(Message).decode


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return head + mask + masked


def upgrade_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """(the HTTP upgrade request, the Sec-WebSocket-Accept it must be answered with)."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, accept


class Recorder:
    """Every live bar received by this process: sequence number, latency, client."""

    def __init__(self) -> None:
        self.seq = array("q")
        self.latency_ms = array("d")
        self.client = array("i")
        self.other = 0
        self.errors: list[str] = []
        self.closes: dict[int, int] = {}


class Client(asyncio.Protocol):
    def __init__(
        self, index: int, symbols: list[str], host: str, port: int, path: str, rec: Recorder
    ) -> None:
        self.index = index
        self.symbols = symbols
        self.rec = rec
        self.request, self.accept = upgrade_request(host, port, path)
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its methods
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"client {self.index}: connection lost ({exc})"))

    def _fail(self, why: str) -> None:
        self.rec.errors.append(f"client {self.index}: {why}")
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            if not head.startswith("HTTP/1.1 101") or self.accept.decode() not in head:
                self._fail(f"upgrade refused: {head.splitlines()[0] if head else '?'}")
                return
            self.open = True
            request = {"action": "subscribe", "bars": self.symbols, "id": self.index}
            assert self.transport is not None
            self.transport.write(client_frame(0x1, json.dumps(request).encode()))
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                at = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                at = 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            self._frame(b0 & 0x0F, payload, now)

    def _frame(self, opcode: int, payload: bytes, now: float) -> None:
        rec = self.rec
        if opcode == 0x1:
            m = DECODE(payload)
            if m.type == "bar" and m.notified_at is not None and m.volume is not None:
                rec.seq.append(m.volume)
                rec.latency_ms.append((now - m.notified_at) * 1000.0)
                rec.client.append(self.index)
            elif m.type == "snapshot":
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
            elif m.type == "error":
                self._fail(f"error: {payload[:200]!r}")
            else:
                rec.other += 1
        elif opcode == 0x9 and self.transport is not None:  # ping
            self.transport.write(client_frame(0xA, payload))
        elif opcode == 0x8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            rec.closes[code] = rec.closes.get(code, 0) + 1
            if self.transport is not None:
                self.transport.close()


async def lag_probe(samples: array[float], times: array[float], stop: asyncio.Event) -> None:
    """How late a short sleep wakes up: this process's own event-loop delay."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        samples.append((loop.time() - t - LAG_PROBE_SECONDS) * 1000.0)
        times.append(time.time())


def write_status(path: str, status: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(status))


async def main(args: argparse.Namespace, plan: list[list[str]]) -> None:
    from urllib.parse import urlsplit

    url = urlsplit(args.url)
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path or "/ws"
    indexes = list(range(args.first, args.first + args.count))
    rec = Recorder()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Client] = []
    failed: list[str] = []

    async def start(i: int) -> None:
        async with gate:
            try:
                _, client = await loop.create_connection(
                    lambda: Client(i, plan[i], host, port, path, rec), host, port
                )
                clients.append(client)
                await asyncio.wait_for(client.subscribed, 60)
            except Exception as exc:
                failed.append(f"client {i}: {type(exc).__name__}: {exc}")

    t = time.monotonic()
    await asyncio.gather(*(start(i) for i in indexes))
    lag, lag_at = array("d"), array("d")
    probe = asyncio.create_task(lag_probe(lag, lag_at, stop))
    status: dict[str, Any] = {
        "pid": os.getpid(),
        "clients": len(indexes),
        "subscribed": len(indexes) - len(failed),
        "failed": failed[:20],
        "seconds": round(time.monotonic() - t, 2),
    }
    write_status(args.ready, status)
    await stop.wait()
    await probe
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    np.savez(
        args.out,
        seq=np.frombuffer(rec.seq, dtype=np.int64),
        latency_ms=np.frombuffer(rec.latency_ms, dtype=np.float64),
        client=np.frombuffer(rec.client, dtype=np.int32),
        lag_ms=np.frombuffer(lag, dtype=np.float64),
        lag_at=np.frombuffer(lag_at, dtype=np.float64),
        meta=np.array(
            json.dumps({**status, "other": rec.other, "errors": rec.errors[:20], "closes": rec.closes})
        ),
    )


def run() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--plan", required=True, help="JSON: one list of symbols per client")
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    plan: list[list[str]] = json.loads(Path(args.plan).read_text())
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args, plan))
    else:
        uvloop.run(main(args, plan))


if __name__ == "__main__":
    run()
