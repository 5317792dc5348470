"""The soak's load and its records: WebSocket clients, HTTP readers, ops calls, a reference LISTEN.

- `WsClient`: subscribed to every symbol's 1m bars and quotes (`*`); reconnects (and
  subscribes again) when the connection drops; records every bar it receives and every gap in
  what it saw: from the last message before a `resync` or a lost connection to the snapshot
  that follows (those bars the snapshot covers).
- `Reference`: its own LISTEN on md_bars, straight to Postgres: what was notified (the bars
  every client should have), and its own blind spots (reconnects).
- `HttpReader`: every read endpoint in turn (price, history 1m, a built 1h, CSV, intraday,
  coverage, versions, multi-symbol bars, snapshots, stats), recording each status.
- `Ops`: a manual backfill and a policy reload every few minutes (the faults reload too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import websockets

from market_data.notifications import BAR_CHANNEL


@dataclass
class Gap:
    """A stretch in which a client may have missed notifications, closed by a snapshot."""

    start: float
    """Epoch seconds of the last message received before it."""
    end: float | None = None
    """When the snapshot that covers it arrived (None: never closed)."""
    why: str = ""


@dataclass
class WsClient:
    url: str
    name: str
    bars: dict[tuple[str, str], float] = field(default_factory=dict)
    """(symbol, as_of) -> arrival (epoch seconds) of each bar message."""
    revisions: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    connected_at: float | None = None
    connects: int = 0
    resyncs: int = 0
    last_message: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                async with websockets.connect(
                    self.url, compression=None, ping_interval=None, max_size=2**24
                ) as ws:
                    await ws.send(
                        json.dumps(
                            {
                                "action": "subscribe",
                                "bars": ["*"],
                                "quotes": ["*"],
                                "intervals": ["1m"],
                                "id": 1,
                            }
                        )
                    )
                    self.connects += 1
                    backoff = 0.5
                    await self._read(ws, stop)
            except (TimeoutError, OSError, websockets.WebSocketException):
                pass
            if stop.is_set():
                return
            if self.connected_at is not None and (not self.gaps or self.gaps[-1].end is not None):
                self.gaps.append(Gap(start=self.last_message or time.time(), why="connection lost"))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _read(self, ws: websockets.ClientConnection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            now = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "bar":
                self.bars.setdefault((message["symbol"], message["as_of"]), now)
                if message.get("revision"):
                    self.revisions.append(message)
            elif kind == "snapshot":
                if self.connected_at is None:
                    self.connected_at = now
                for gap in self.gaps:
                    if gap.end is None:
                        gap.end = now
            elif kind == "resync":
                self.resyncs += 1
                self.gaps.append(Gap(start=self.last_message or now, why="resync"))
            if kind in ("bar", "quote", "snapshot", "heartbeat"):
                self.last_message = now


@dataclass
class Reference:
    """Every md_bars notification, from a LISTEN of the soak's own (module docstring)."""

    dsn: str
    notified: list[tuple[str, str, str, float]] = field(default_factory=list)
    """(symbol, interval, as_of, received epoch seconds)."""
    blind: list[tuple[float, float]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        lost_at: float | None = None
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                lost_at = lost_at or time.time()
                await asyncio.sleep(1)
                continue
            if lost_at is not None:
                self.blind.append((lost_at, time.time()))
                lost_at = None

            def on_note(_c: Any, _pid: int, _ch: str, payload: str) -> None:
                n = json.loads(payload)
                self.notified.append((n["symbol"], n["interval"], n["as_of"], time.time()))

            try:
                await conn.add_listener(BAR_CHANNEL, on_note)
                while not stop.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
                    await asyncio.sleep(1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                lost_at = time.time() if not stop.is_set() else None
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)


@dataclass
class HttpReader:
    api: str
    symbols: list[str]
    seed: int
    statuses: list[tuple[float, str, int]] = field(default_factory=list)

    def paths(self, rng: random.Random) -> list[str]:
        s = rng.choice(self.symbols)
        many = ",".join(rng.sample(self.symbols, min(4, len(self.symbols))))
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ts = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return [
            f"/stocks/{s}/price",
            f"/stocks/{s}/history?interval=1m&limit=200",
            f"/stocks/{s}/history?interval=1h&start={start}",
            f"/stocks/{s}/history?interval=1m&format=csv&limit=500",
            f"/stocks/{s}/intraday?interval=5m",
            f"/stocks/{s}/coverage?interval=1m",
            f"/stocks/{s}/versions?interval=1m&ts={ts}",
            f"/stocks/bars?symbols={many}&interval=15m&limit=50",
            f"/stocks/snapshots?symbols={many}",
            "/stats/providers",
            "/stats/slo",
            "/ready",
        ]

    async def run(self, stop: asyncio.Event, pause: float = 0.05) -> None:
        rng = random.Random(self.seed)
        async with httpx.AsyncClient(base_url=self.api, timeout=30) as http:
            while not stop.is_set():
                for path in self.paths(rng):
                    try:
                        r = await http.get(path)
                        status = r.status_code
                    except httpx.HTTPError:
                        status = 0  # no answer (an API process killed mid-request)
                    self.statuses.append((time.time(), path.split("?")[0], status))
                    await asyncio.sleep(pause)
                    if stop.is_set():
                        return


@dataclass
class Ops:
    api: str
    token: str
    symbols: list[str]
    calls: list[tuple[float, str, int]] = field(default_factory=list)

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response | None:
        async with httpx.AsyncClient(base_url=self.api, timeout=60) as http:
            try:
                r = await http.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {self.token}"}
                )
            except httpx.HTTPError:
                self.calls.append((time.time(), path, 0))
                return None
        self.calls.append((time.time(), path, r.status_code))
        return r

    async def policy(self) -> str:
        r = await self.call("GET", "/ops/policy")
        assert r is not None and r.status_code == 200, r
        body: str = r.json()["body"]
        return body

    async def reload(self, body: str) -> int:
        r = await self.call("POST", "/ops/reload", {"policy": body})
        return 0 if r is None else r.status_code

    async def backfill(self, symbol: str, minutes: int = 30) -> int:
        end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
        start = end - timedelta(minutes=minutes)
        r = await self.call(
            "POST",
            "/ops/backfill",
            {"symbols": [symbol], "interval": "1m", "start": start.isoformat(), "end": end.isoformat()},
        )
        return 0 if r is None else r.status_code

    async def run(self, stop: asyncio.Event, every: float, base_policy: str) -> None:
        rng = random.Random(3)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            await self.backfill(rng.choice(self.symbols))
