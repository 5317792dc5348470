"""ws: notify-to-receive latency of 1,000 WebSocket clients (10 of 100 symbols each), then with one stalled.

The API runs in its own uvicorn process as `./dev up` runs it (no per-message deflate), with
MD_WS_MAX_CONNECTIONS_PER_ADDRESS raised above the client count (every client comes from
127.0.0.1) and every other limit at its default. `--ws-clients` clients (1,000), spread over
`--ws-procs` processes of tests/benchmarks/ws_clients.py (2), each subscribe (`WS /ws`,
`{"action": "subscribe", "bars": [...]}`) to 10 of 100 universe symbols picked at random
(seeded): about 100 clients per symbol.

The publisher (this process, one asyncpg connection) sends one `pg_notify` on md_bars per
symbol per second in the payload shape of the ingest write path (the same keys in the same
order, checked against plugins/market_data/notifications.py; `volume` carries a sequence
number), spread evenly over the second: 100 notifications/s, ~10,000 messages/s out. (The
ingest path notifies a whole batch at its commit; a burst of 100 symbols x 100 clients at
once would measure how long 10,000 sends take, not the latency of one update.)
`notified_at` is `extract(epoch FROM clock_timestamp())` taken by Postgres: microseconds, on
the machine's clock, so each client measures `arrival - notified_at` directly (arrival is
taken before the frame is parsed).

Each of `--ws-rounds` rounds (3) has two phases of `--ws-seconds`: all clients reading; then one
more client, a raw socket with a 4 KiB receive buffer subscribed to every symbol ("*"), that
never reads. At 100 messages/s the loopback buffers would hide such a client from the server
for minutes, so before its phase it is sent padded messages of a symbol nobody else follows
until the kernel's send queue stops growing: from then on the server's writes to it wait,
its backlog grows, and after 15 s (the default `stall_seconds`) the server closes it. The
figures are the medians over rounds of each phase's p50/p99, the stall ratio the median of
the per-round ratios (each stalled phase against the reading phase just before it). Details
hold the pooled percentiles, messages expected (from the subscriptions) and received, the
server's drop counter and publish histogram, what the stalled socket reached, the cores each
process used (and everything else on the machine), and the client processes' own event-loop
lag, their share of the latency.

Targets: p99 < 25 ms with every client reading; with one stalled, the reading clients' p99
within 1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import time
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from market_data.notifications import BAR_CHANNEL, payload_json
from tests.benchmarks.cpu import CpuMeter
from tests.benchmarks.harness import (
    PID,
    Proc,
    Row,
    api_env,
    bench_db,
    free_port,
    log,
    redis_cleanup,
    si,
    temp_dir,
    uvicorn_args,
    wait_http,
)
from tests.benchmarks.ws_clients import client_frame, upgrade_request

NAME = "ws"
SYMBOLS = 100
PER_CLIENT = 10
RATE_PER_SYMBOL = 1.0
WARMUP_SECONDS = 3.0
SETTLE_SECONDS = 1.0
DRAIN_SECONDS = 2.0
P99_TARGET_MS = 25.0
STALL_TARGET = 1.2
STALLED_RCVBUF = 4096
BASE_TS = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)

# The ingest path's payload (market_data.notifications), with the publisher's sequence number as `volume`.
NOTIFY = f"""
SELECT pg_notify('{BAR_CHANNEL}', json_build_object(
    'type', 'bar', 'symbol', $1::text, 'interval', '1m', 'ts', $2::timestamptz, 'as_of', clock_timestamp(),
    'provider', 'synthetic', 'open', $3::float8, 'high', $3::float8 * 1.001, 'low', $3::float8 * 0.999,
    'close', $3::float8, 'volume', $4::bigint, 'vwap', $3::float8,
    'trade_count', NULL::int,
    'version', 1, 'revision', false, 'previous_as_of', NULL,
    'notified_at', extract(epoch FROM clock_timestamp()))::text)"""


# The same keys, `count` at once for the stalled client's own symbol (one transaction), padded
# in `provider` to 6 KB each (pg_notify takes up to 8,000 bytes), so a few hundred fill the
# socket buffers instead of ~10,000 small ones that would queue ahead of every other update.
FILL = f"""
SELECT count(pg_notify('{BAR_CHANNEL}', json_build_object(
    'type', 'bar', 'symbol', $1::text, 'interval', '1m', 'ts', $2::timestamptz + make_interval(mins => g),
    'as_of', clock_timestamp(), 'provider', $4::text, 'open', 100.0::float8, 'high', 100.1::float8,
    'low', 99.9::float8, 'close', 100.0::float8, 'volume', -g::bigint, 'vwap', 100.0::float8,
    'trade_count', NULL::int,
    'version', 1, 'revision', false, 'previous_as_of', NULL,
    'notified_at', extract(epoch FROM clock_timestamp()))::text))
FROM generate_series(1, $3::int) g"""
FILL_PAD = "x" * 6000
FILL_SYMBOL = "BWSFILL"
"""In the universe, published to nobody but the stalled client (its "*" matches it)."""
FILL_BURST = 50
FILL_MAX = 5_000


def payload_keys(sql: str) -> list[str]:
    """The keys of the first json_build_object(...) in `sql`, in order."""
    body = sql.split("json_build_object(", 1)[1].split(")::text", 1)[0]
    parts = [p.strip() for p in re.sub(r"\s+", " ", body).split(",")]
    return [p.strip("'") for p in parts[0::2]]


def check_payload_shape() -> None:
    ingest = payload_keys(payload_json("bar", versions="first"))
    for sql in (NOTIFY, FILL):
        if payload_keys(sql) != ingest:
            raise AssertionError(
                f"the publisher's payload {payload_keys(sql)} is not the ingest path's {ingest}"
            )


# ------------------------------------------------------------------------------------------------
# data and plan
# ------------------------------------------------------------------------------------------------
async def seed(dsn: str, symbols: list[str]) -> None:
    """Universe rows and one 1m bar per symbol (so each snapshot has something to send)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "symbol_universe",
            records=[(s, "XNAS", "T0") for s in symbols],
            columns=["symbol", "exchange_mic", "tier"],
        )
        as_of = datetime.now(UTC)
        await conn.copy_records_to_table(
            "bars",
            records=[
                (s, "1m", BASE_TS, as_of, "synthetic", 100.0, 100.1, 99.9, 100.0, 1000) for s in symbols
            ],
            columns=[
                "symbol",
                "interval",
                "ts",
                "as_of",
                "provider",
                "open",
                "high",
                "low",
                "close",
                "volume",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def subscription_plan(clients: int, symbols: list[str], seed: int = 5) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(symbols, PER_CLIENT, replace=False).tolist()) for _ in range(clients)]


# ------------------------------------------------------------------------------------------------
# publisher
# ------------------------------------------------------------------------------------------------
@dataclass
class Publisher:
    """pg_notify at a steady rate, symbol after symbol; remembers when each sequence number went."""

    dsn: str
    symbols: list[str]
    rate: float
    sent_at: array[float] = field(default_factory=lambda: array("d"))
    behind_max_ms: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, started: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            stmt = await conn.prepare(NOTIFY)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            started.set()
            seq = 0
            n = len(self.symbols)
            while not self._stop.is_set():
                due = t0 + seq / self.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.behind_max_ms = max(self.behind_max_ms, -delay * 1000)
                symbol = self.symbols[seq % n]
                ts = BASE_TS + timedelta(minutes=1 + seq // n)
                self.sent_at.append(time.time())
                await stmt.fetchval(symbol, ts, 100.0 + (seq % 97) / 10, seq)
                seq += 1
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()

    def seqs_between(self, start: float, end: float) -> np.ndarray:
        sent = np.frombuffer(self.sent_at, dtype=np.float64)
        return np.nonzero((sent >= start) & (sent < end))[0]


# ------------------------------------------------------------------------------------------------
# the stalled client
# ------------------------------------------------------------------------------------------------
def stalled_client(port: int) -> socket.socket:
    """A raw socket with a 4 KiB receive buffer: upgrade, subscribe to every symbol, never read again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    request, accept = upgrade_request("127.0.0.1", port, "/ws")
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing after the upgrade response is read
        if not chunk:
            raise ConnectionError("the server closed the stalled client's upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101") or accept not in head:
        raise ConnectionError(f"stalled client: upgrade refused: {head[:100]!r}")
    sock.sendall(
        client_frame(0x1, json.dumps({"action": "subscribe", "bars": ["*"], "id": "stalled"}).encode())
    )
    return sock


async def fill_until_blocked(dsn: str, server_port: int, client_port: int) -> dict[str, Any]:
    """Notify the stalled client's own symbol in bursts until the kernel holds no more for it.

    At 100 messages/s a client that stops reading needs minutes to fill the loopback socket
    buffers (megabytes); until then the server cannot tell it from a reading one. Once the
    kernel's send queue stops growing, the server's writes to it wait (uvicorn pauses on its
    transport buffer), its later messages pile up in its backlog: it is stalled for real.
    """
    conn = await asyncpg.connect(dsn)
    sent, grew_at, last = 0, 0, -1
    try:
        while sent < FILL_MAX:
            await conn.fetchval(FILL, FILL_SYMBOL, BASE_TS, FILL_BURST, FILL_PAD)
            sent += FILL_BURST
            await asyncio.sleep(0.3)
            q = kernel_queue(server_port, client_port)
            size = q["server_send_queue_bytes"] if q else 0
            if size > last:
                last, grew_at = size, sent
            elif sent - grew_at >= 2 * FILL_BURST:
                break
    finally:
        await conn.close()
    return {"fill_notifications": sent, "kernel_send_queue_bytes": last, "blocked": sent < FILL_MAX}


def kernel_queue(server_port: int, client_port: int) -> dict[str, int] | None:
    """Bytes the kernel holds on the server's side of one loopback connection (/proc/net/tcp)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            local, remote = cols[1], cols[2]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                tx, rx = cols[4].split(":")
                return {"server_send_queue_bytes": int(tx, 16), "server_recv_queue_bytes": int(rx, 16)}
    return None


# ------------------------------------------------------------------------------------------------
# the API's own metrics
# ------------------------------------------------------------------------------------------------
def scrape(url: str) -> dict[str, Any]:
    text = httpx.get(url + "/metrics", timeout=10).text
    buckets: dict[float, float] = {}
    out: dict[str, Any] = {"buckets": buckets}
    for line in text.splitlines():
        if line.startswith("ws_publish_latency_ms_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        elif line.startswith(
            ("ws_dropped_messages_total ", "ws_clients_gauge ", "ws_publish_latency_ms_count ")
        ):
            name, value = line.split()[:2]
            out[name] = float(value)
    return out


def histogram_quantile(before: dict[str, Any], after: dict[str, Any], q: float) -> float | None:
    """The bucket bound under which a `q` share of the observations between two scrapes fell."""
    bounds = sorted(after["buckets"])
    counts = [after["buckets"][b] - before["buckets"].get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for b, c in zip(bounds, counts, strict=True):
        if c >= q * total:
            return b
    return None


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def api_server(dsn: str, log_dir: Path, clients: int) -> AsyncIterator[tuple[Proc, int]]:
    port = free_port()
    env = api_env(
        dsn,
        f"md:bench:{NAME}:{PID}:",
        {"MD_WS_MAX_CONNECTIONS_PER_ADDRESS": str(clients + 100)},
    )
    proc = Proc("api", uvicorn_args("api.app:create_app", port), env, log_dir)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/", 90, [proc])
        yield proc, port
    finally:
        proc.stop()


def start_clients(
    port: int, plan_path: Path, clients: int, procs: int, tmp: Path
) -> list[tuple[Proc, Path, Path]]:
    started: list[tuple[Proc, Path, Path]] = []
    per = -(-clients // procs)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for i in range(procs):
        first, count = i * per, min(per, clients - i * per)
        if count <= 0:
            break
        ready, out = tmp / f"clients-{i}.ready", tmp / f"clients-{i}.npz"
        args = [
            sys.executable,
            "-m",
            "tests.benchmarks.ws_clients",
            "--url",
            f"ws://127.0.0.1:{port}/ws",
            "--plan",
            str(plan_path),
            "--first",
            str(first),
            "--count",
            str(count),
            "--ready",
            str(ready),
            "--out",
            str(out),
        ]
        started.append((Proc(f"clients-{i}", args, env, tmp), ready, out))
    return started


async def wait_ready(started: list[tuple[Proc, Path, Path]], within: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        for proc, ready, _ in started:
            if not proc.alive() and not ready.exists():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        if all(ready.exists() for _, ready, _ in started):
            return [json.loads(ready.read_text()) for _, ready, _ in started]
        if time.monotonic() > deadline:
            raise RuntimeError(f"ws clients not subscribed within {within:g} s")
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
READING, STALLED = "reading", "one stalled"


@dataclass
class Phase:
    kind: str
    round: int
    start: float = 0.0
    end: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    metrics_before: dict[str, Any] = field(default_factory=dict)
    metrics_after: dict[str, Any] = field(default_factory=dict)
    stalled: dict[str, Any] | None = None


@dataclass
class Received:
    """Every live bar the reading clients got (all client processes together)."""

    seq: np.ndarray
    latency_ms: np.ndarray
    lag_ms: np.ndarray
    lag_at: np.ndarray


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def figures(
    phases: list[Phase], pub: Publisher, plan: list[list[str]], symbols: list[str], got: Received
) -> dict[str, Any]:
    """Latency, delivery and drops over `phases` together (the same kind, several rounds)."""
    subscribers = dict.fromkeys(symbols, 0)
    for subs in plan:
        for s in subs:
            subscribers[s] += 1
    per_symbol = np.array([subscribers[s] for s in symbols], dtype=np.int64)
    mask = np.zeros(len(got.seq), dtype=bool)
    lag_mask = np.zeros(len(got.lag_at), dtype=bool)
    expected = 0
    per_round = []
    for p in phases:
        sent = pub.seqs_between(p.start, p.end)
        expected += int(per_symbol[sent % len(symbols)].sum())
        in_phase = (got.seq >= sent[0]) & (got.seq <= sent[-1]) if len(sent) else np.zeros(len(got.seq), bool)
        mask |= in_phase
        lag_mask |= (got.lag_at >= p.start) & (got.lag_at < p.end)
        lat = got.latency_ms[in_phase]
        per_round.append(
            {
                "round": p.round + 1,
                "p50_ms": round(_pct(lat, 50), 2),
                "p99_ms": round(_pct(lat, 99), 2),
                "messages": len(lat),
                "server_p99_bucket_ms": histogram_quantile(p.metrics_before, p.metrics_after, 0.99),
                "server_dropped": p.metrics_after.get("ws_dropped_messages_total", 0.0)
                - p.metrics_before.get("ws_dropped_messages_total", 0.0),
                "cores": p.cores,
                **({"stalled": p.stalled} if p.stalled is not None else {}),
            }
        )
    lat = got.latency_ms[mask]
    lag = got.lag_ms[lag_mask]
    seconds = sum(p.end - p.start for p in phases)
    cores = {k: round(float(np.mean([p.cores.get(k, 0.0) for p in phases])), 2) for k in phases[0].cores}
    return {
        "p99_ms_median_of_rounds": float(np.median([r["p99_ms"] for r in per_round])),
        "p50_ms_median_of_rounds": float(np.median([r["p50_ms"] for r in per_round])),
        "seconds": round(seconds, 2),
        "expected_messages": expected,
        "received_messages": len(lat),
        "lost_messages": expected - len(lat),
        "messages_per_s": len(lat) / seconds if seconds > 0 else 0.0,
        "p50_ms": _pct(lat, 50),
        "p90_ms": _pct(lat, 90),
        "p99_ms": _pct(lat, 99),
        "p999_ms": _pct(lat, 99.9),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "server_dropped": sum(r["server_dropped"] for r in per_round),
        "client_loop_lag_p99_ms": round(_pct(lag, 99), 2) if len(lag) else None,
        "cores_mean": cores,
        "rounds": per_round,
    }


def rows_from(figs: dict[str, dict[str, Any]], clients: int, shape: str, extra: dict[str, Any]) -> list[Row]:
    one, two = figs[READING], figs[STALLED]
    # per round: the stalled phase against the reading phase just before it (the same conditions)
    ratios = [
        s["p99_ms"] / r["p99_ms"] for r, s in zip(one["rounds"], two["rounds"], strict=True) if r["p99_ms"]
    ]
    ratio = float(np.median(ratios)) if ratios else float("nan")
    p99_one, p99_two = one["p99_ms_median_of_rounds"], two["p99_ms_median_of_rounds"]
    c = one["cores_mean"]
    load = (
        f"cores: API process {c.get('api', 0):.2f} (one Python thread), clients {c.get('clients', 0):.2f}, "
        f"Postgres {c.get('postgres', 0):.2f}, publisher {c.get('publisher', 0):.2f}, everything else on the "
        f"machine {c.get('others', 0):.2f}, of {c.get('available', 0):g}; the clients' own loop lag p99 "
        f"{one['client_loop_lag_p99_ms']} ms"
    )
    lost = one["lost_messages"] + two["lost_messages"]
    return [
        Row(
            benchmark=f"ws: {clients} clients x {PER_CLIENT} of {SYMBOLS} symbols, notify-to-receive",
            figure=f"p99 {p99_one:.1f} ms (p50 {one['p50_ms_median_of_rounds']:.1f} ms)",
            baseline="",
            ratio=None,
            target=f"p99 < {P99_TARGET_MS:g} ms",
            met=p99_one < P99_TARGET_MS,
            details={"shape": shape, "figures": one, "load": load, **extra},
        ),
        Row(
            benchmark="ws: the same with one client stalled",
            figure=f"p99 {p99_two:.1f} ms (p50 {two['p50_ms_median_of_rounds']:.1f} ms)",
            baseline=f"p99 {p99_one:.1f} ms all reading",
            ratio=ratio,
            target=f"<= {STALL_TARGET:g}x",
            met=ratio <= STALL_TARGET,
            details={"figures": two, "ratio_per_round": [round(x, 3) for x in ratios]},
        ),
        Row(
            benchmark=f"ws: delivered to the {clients} reading clients",
            figure=(
                f"{si(one['messages_per_s'])} msg/s, {lost} lost; "
                f"server drops {one['server_dropped'] + two['server_dropped']:g}"
            ),
            baseline=f"expected {si(one['expected_messages'] / one['seconds'])} msg/s",
            ratio=one["received_messages"] / one["expected_messages"] if one["expected_messages"] else None,
            target="0 lost",
            met=lost == 0,
            details={
                kind: {
                    k: f[k]
                    for k in (
                        "expected_messages",
                        "received_messages",
                        "lost_messages",
                        "messages_per_s",
                        "server_dropped",
                    )
                }
                for kind, f in figs.items()
            },
        ),
    ]


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> list[Row]:
    check_payload_shape()
    clients, seconds = int(args.ws_clients), float(args.ws_seconds)
    nprocs, rounds = max(1, int(args.ws_procs)), max(1, int(getattr(args, "ws_rounds", args.rounds)))
    symbols = [f"BWS{i:03d}" for i in range(SYMBOLS)]
    plan = subscription_plan(clients, symbols)
    rate = SYMBOLS * RATE_PER_SYMBOL
    shape = (
        f"{clients} clients in {nprocs} processes, {PER_CLIENT} of {SYMBOLS} symbols each; {rate:g} "
        f"notifications/s spread evenly; {rounds} rounds of {seconds:g} s all reading, then {seconds:g} s "
        f"with one stalled client, after a {WARMUP_SECONDS:g} s warm-up"
    )
    try:
        async with bench_db(NAME) as d:
            await seed(d.dsn, [*symbols, FILL_SYMBOL])
            with temp_dir("md-bench-ws-") as tmp:
                plan_path = tmp / "plan.json"
                plan_path.write_text(json.dumps(plan))
                async with api_server(d.dsn, tmp, clients) as (api, port):
                    started = start_clients(port, plan_path, clients, nprocs, tmp)
                    try:
                        t = time.monotonic()
                        status = await wait_ready(started, 120 + clients / 20)
                        subscribed = sum(s["subscribed"] for s in status)
                        log(f"ws: {subscribed} clients subscribed in {time.monotonic() - t:.1f} s")
                        failed = [f for s in status for f in s["failed"]]
                        if failed:
                            raise RuntimeError(f"ws clients failed to subscribe: {failed[:5]}")
                        figs, extra = await measure(
                            d, api, port, started, symbols, plan, rate, seconds, rounds
                        )
                    finally:
                        for proc, _, _ in started:
                            proc.stop()
    finally:
        await redis_cleanup(f"md:bench:{NAME}:{PID}:")
    return rows_from(figs, clients, shape, extra)


async def measure(
    d: Any,
    api: Proc,
    port: int,
    started: list[tuple[Proc, Path, Path]],
    symbols: list[str],
    plan: list[list[str]],
    rate: float,
    seconds: float,
    rounds: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    url = f"http://127.0.0.1:{port}"
    pub = Publisher(d.dsn, symbols, rate)
    pub_started = asyncio.Event()
    pub_task = asyncio.create_task(pub.run(pub_started))
    await asyncio.wait_for(pub_started.wait(), 30)
    phases: list[Phase] = []
    stalled: socket.socket | None = None

    async def phase(kind: str, rnd: int) -> Phase:
        p = Phase(kind, rnd)
        p.metrics_before = await asyncio.to_thread(scrape, url)
        m = CpuMeter(
            processes={"api": lambda: [api.pid], "clients": lambda: [c.pid for c, _, _ in started]},
            database=d.name,
            self_label="publisher",
        )
        with m:
            p.start = time.time()
            await asyncio.sleep(seconds)
            p.end = time.time()
        p.cores = m.cores
        p.metrics_after = await asyncio.to_thread(scrape, url)
        phases.append(p)
        log(f"ws: round {rnd + 1} '{kind}' done; cores {p.cores}")
        return p

    try:
        log(f"ws: publishing {rate:g} notifications/s; warm-up {WARMUP_SECONDS:g} s")
        await asyncio.sleep(WARMUP_SECONDS)
        for rnd in range(rounds):
            await phase(READING, rnd)
            stalled = await asyncio.to_thread(stalled_client, port)
            stalled_port = stalled.getsockname()[1]
            await asyncio.sleep(0.5)
            filled = await fill_until_blocked(d.dsn, port, stalled_port)
            await asyncio.sleep(SETTLE_SECONDS)
            at_start = kernel_queue(port, stalled_port)
            p = await phase(STALLED, rnd)
            p.stalled = {
                "subscribed_to": "* (every symbol)",
                "receive_buffer_bytes": stalled.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                "fill": filled,
                "kernel_at_phase_start": at_start,
                "kernel_at_phase_end": kernel_queue(port, stalled_port),
                "still_connected_at_end": p.metrics_after.get("ws_clients_gauge") == len(plan) + 1,
            }
            log(f"ws: stalled client: {p.stalled}")
            stalled.close()
            stalled = None
            await asyncio.sleep(SETTLE_SECONDS)
        pub.stop()
        await asyncio.wait_for(pub_task, 10)
        await asyncio.sleep(DRAIN_SECONDS)
    finally:
        pub.stop()
        if not pub_task.done():
            pub_task.cancel()
        with contextlib.suppress(BaseException):
            await pub_task
        if stalled is not None:
            stalled.close()
    for proc, _, _ in started:  # the clients write their records when stopped
        await asyncio.to_thread(proc.stop)
    got, metas = collect(started)
    figs = {
        kind: figures([p for p in phases if p.kind == kind], pub, plan, symbols, got)
        for kind in (READING, STALLED)
    }
    for kind, f in figs.items():
        log(
            f"ws: {kind}: {f['messages_per_s']:,.0f} msg/s, p50 {f['p50_ms']:.2f} ms, "
            f"p99 {f['p99_ms']:.2f} ms, lost {f['lost_messages']}, server drops {f['server_dropped']:g}"
        )
    extra = {
        "publisher_behind_max_ms": round(pub.behind_max_ms, 2),
        "client_processes": metas,
        "clock": "notified_at = extract(epoch FROM clock_timestamp()) (microseconds); arrival = time.time()",
    }
    return figs, extra


def collect(started: list[tuple[Proc, Path, Path]]) -> tuple[Received, list[dict[str, Any]]]:
    parts: dict[str, list[np.ndarray]] = {"seq": [], "latency_ms": [], "lag_ms": [], "lag_at": []}
    metas = []
    for proc, _, out in started:
        if not out.exists():
            raise RuntimeError(f"{proc.name} wrote no results:\n{proc.tail()}")
        with np.load(out) as z:
            for k, v in parts.items():
                v.append(z[k])
            metas.append(json.loads(str(z["meta"])))
    return Received(**{k: np.concatenate(v) for k, v in parts.items()}), metas
