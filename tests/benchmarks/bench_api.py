"""api: /stocks/{symbol}/price and /history (a session of 1m bars) of the API vs bare Starlette, wrk.

The real API runs as `./dev up` runs it (`python -m api.serve`: one uvicorn process, uvloop and
api/http_protocol.py, no access log); the baseline (tests/benchmarks/baseline_app.py) is a bare
Starlette + asyncpg app served the same way (`api.serve --app`) that runs the same SQL through the
same query functions and encodes the same JSON bodies with msgspec: the difference is what
the API's framework, validation and middleware cost.

Data: a database of this run with `--api-symbols` symbols (300) in the universe, one session
of 1m bars each (the last completed XNAS session: ~390 bars, what `/history` returns with its
default limit of 1,000) and a quote each. wrk (1 thread, 32 connections, --latency) picks
a random symbol for every request (a Lua script over the pre-formatted paths), so the
figures are not those of one hot row. wrk gets one thread because the machine has two cores
that the load generator, the server and Postgres all share: a second wrk thread would only
take CPU from the server. Each endpoint is measured `--rounds` times for `--api-seconds`
per server, after a warm-up of both; within a round the time is cut into 2 s slices, the
API's and the baseline's taking turns (the order flipping every slice), so a burst of other
work on the machine lands on both alike. A round's figure of a server is its requests over
its slices, with the median of the slices' wrk percentiles; the ratio is the median of the
per-round requests/s ratios.

Every run also records, in the row's details, the cores each party used (server, Postgres
backends of this database, wrk, everything else on the machine) and Little's law: with 32
requests always in flight, the mean latency is 32 / (requests/s), whatever the server does,
so a p99 under 10 ms needs well over 3,200 requests/s from a single Python process that
shares two cores with Postgres and wrk. When the baseline itself misses the p99 target, the
limit is the machine and the load shape, not the API; the details say so, with the p99 of a
last short run at 2 connections (where nothing queues). The requests/s rows hold the CPU
per request of the apps alone, framework and handler without server or database
(tests/benchmarks/asgi_overhead.py: the API, the Starlette app, a bare Litestar app): that
fixed difference over the baseline's whole per-request CPU bounds the ratio any tuning of the
database or the server could reach.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from market_data import calendar
from market_data.records import Interval
from tests.benchmarks.cpu import CpuMeter
from tests.benchmarks.harness import (
    BARS_COLUMNS,
    PID,
    ROOT,
    Proc,
    Row,
    api_env,
    bench_db,
    free_port,
    log,
    median,
    redis_cleanup,
    si,
    temp_dir,
    uvicorn_args,
    wait_http,
)

NAME = "api"
MIC = "XNAS"
CONNECTIONS = 32
LIGHT_CONNECTIONS = 2
"""A last, short run per server at this concurrency: the latency of a request that does not queue."""
SLICE_SECONDS = 2.0
"""Each run is cut into slices this long, the API's and the baseline's taking turns."""
THREADS = 1
WARMUP_SECONDS = 2.0
RPS_TARGETS = {"price": 1.5, "history": 0.9, "ws_snapshot": 1.5}
"""Requests/s of the API over the baseline's, per endpoint: /price and the WebSocket snapshot
are served from the API's latest-value cache (api/stocks/latest.py) while the baseline runs
the SQL the API runs without it."""
P99_TARGET_MS = 10.0
ENDPOINTS = {"price": "/stocks/{}/price", "history": "/stocks/{}/history"}
"""Measured with wrk, a random symbol per request."""
WS_ENDPOINT = "ws_snapshot"
"""Subscribe -> snapshot round trips on `WS /ws` (tests/benchmarks/ws_snapshot_load.py)."""
WS_LIMITS_ENV = {
    "MD_WS_MESSAGES_PER_SECOND": "1000000",
    "MD_WS_MESSAGE_BURST": "1000000",
    "MD_WS_MAX_CONNECTIONS_PER_ADDRESS": "1000",
}
"""The API's per-connection request limits, raised: the load is one host sending as fast as it can."""
SERVERS = {"api": "api.app:create_app", "baseline": "tests.benchmarks.baseline_app:create_app"}


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
@dataclass
class Seeded:
    symbols: list[str]
    session_open: datetime
    bars_per_symbol: int


async def seed(dsn: str, count: int) -> Seeded:
    """Universe rows, one session of 1m bars and one quote per symbol (COPY, then ANALYZE)."""
    from market_data import db

    symbols = [f"BAPI{i:04d}" for i in range(count)]
    now = datetime.now(UTC)
    opened = calendar.last_completed_session_open(MIC, now)
    times = calendar.expected_bar_times(MIC, Interval.M1, opened, opened + timedelta(days=1))
    as_of = now - timedelta(hours=1)
    rng = np.random.default_rng(11)
    bars: list[tuple[Any, ...]] = []
    quotes: list[tuple[Any, ...]] = []
    for s in symbols:
        px = np.round((20 + 400 * rng.random()) * (1 + np.cumsum(rng.normal(0, 0.001, len(times)))), 4)
        vol = rng.integers(100, 50_000, len(times))
        for t, p, v in zip(times, px.tolist(), vol.tolist(), strict=True):
            bars.append(
                (s, "1m", t, as_of, "synthetic", "final", p, p * 1.001, p * 0.999, p, v, p, v // 50 + 1, 1)
            )
        last = float(px[-1])
        quotes.append(
            (s, times[-1] + timedelta(seconds=59), "synthetic", as_of, last, last - 0.01, last + 0.01)
        )
    conn = await db.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "symbol_universe",
            records=[(s, MIC, "T0") for s in symbols],
            columns=["symbol", "exchange_mic", "tier"],
        )
        await conn.copy_records_to_table(
            "bars",
            records=bars,
            columns=BARS_COLUMNS,
        )
        await conn.copy_records_to_table(
            "quotes", records=quotes, columns=["symbol", "ts", "provider", "as_of", "last", "bid", "ask"]
        )
        await conn.execute("VACUUM ANALYZE bars")
        await conn.execute("VACUUM ANALYZE quotes")
        await conn.execute("ANALYZE symbol_universe")
    finally:
        await conn.close()
    return Seeded(symbols=symbols, session_open=opened, bars_per_symbol=len(times))


# ------------------------------------------------------------------------------------------------
# wrk
# ------------------------------------------------------------------------------------------------
LUA = """-- generated by tests/benchmarks/bench_api.py: a random path per request, a JSON summary
local paths = {%(paths)s}
local reqs = {}
init = function(args)
  for i, p in ipairs(paths) do reqs[i] = wrk.format("GET", p) end
  math.randomseed(%(seed)d)
end
request = function()
  return reqs[math.random(#reqs)]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "p999_us": %%d, "max_us": %%d, "mean_us": %%.1f, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(paths: Sequence[str], seed: int = 7) -> str:
    return LUA % {"paths": ", ".join(json.dumps(p) for p in paths), "seed": seed}


@dataclass
class WrkRun:
    server: str
    endpoint: str
    round: int
    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    bytes_per_request: float
    errors: dict[str, int]
    cores: dict[str, float]


def run_wrk(
    base_url: str, script: Path, seconds: float, meter: CpuMeter, connections: int = CONNECTIONS
) -> dict[str, Any]:
    """One wrk run (1 thread, 32 connections) with CPU accounting; wrk's summary as a dict.

    A `script` ending in `.symbols` (tickers, comma-separated) runs the WebSocket snapshot load
    (tests/benchmarks/ws_snapshot_load.py) over those symbols instead, with the same summary.
    """
    if script.suffix == ".symbols":
        return run_ws_load(base_url, script, seconds, meter, connections)
    args = [
        "wrk",
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        base_url,
    ]
    with meter:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"^WRK_JSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(match.group(1))
    return out


def run_ws_load(
    base_url: str, script: Path, seconds: float, meter: CpuMeter, connections: int
) -> dict[str, Any]:
    args = [
        sys.executable,
        "-m",
        "tests.benchmarks.ws_snapshot_load",
        base_url.replace("http://", "ws://") + "/ws",
        "--symbols",
        script.read_text(),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with meter:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=seconds + 60, check=False, env=env
        )
    match = re.search(r"^WS_JSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(
            f"ws load failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    out: dict[str, Any] = json.loads(match.group(1))
    return out


def measure(
    server: str,
    endpoint: str,
    rnd: int,
    base_url: str,
    script: Path,
    seconds: float,
    meter: CpuMeter,
    connections: int = CONNECTIONS,
    quiet: bool = False,
) -> WrkRun:
    """One measured wrk run; `rnd` -1 marks the light-load run (LIGHT_CONNECTIONS)."""
    s = run_wrk(base_url, script, seconds, meter, connections)
    errors = {k: int(s[k]) for k in ("connect", "read", "write", "status", "timeout")}
    if errors["status"] or errors["connect"]:
        raise RuntimeError(f"{server} {endpoint}: wrk saw errors {errors}: the run measured failures")
    secs = s["duration_us"] / 1e6
    run = WrkRun(
        server=server,
        endpoint=endpoint,
        round=rnd,
        rps=s["requests"] / secs,
        requests=int(s["requests"]),
        seconds=round(secs, 2),
        p50_ms=s["p50_us"] / 1000,
        p90_ms=s["p90_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        p999_ms=s["p999_us"] / 1000,
        max_ms=s["max_us"] / 1000,
        mean_ms=s["mean_us"] / 1000,
        bytes_per_request=s["bytes"] / max(1, s["requests"]),
        errors=errors,
        cores=dict(meter.cores),
    )
    if not quiet:
        log_run(run, connections)
    return run


def log_run(run: WrkRun, connections: int = CONNECTIONS) -> None:
    label = f"round {run.round + 1}" if run.round >= 0 else f"{connections} conns"
    log(
        f"api {label} {run.endpoint:7s} {run.server:8s}: {run.rps:8,.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
        f"p99 {run.p99_ms:6.2f} ms  cores {run.cores}"
    )


def combine(slices: list[WrkRun]) -> WrkRun:
    """One figure of a server over its interleaved slices: requests/s over all of them, the
    median of their percentiles, the mean of their cores."""
    first = slices[0]
    requests = sum(x.requests for x in slices)
    seconds = sum(x.seconds for x in slices)
    keys = {k for x in slices for k in x.cores}
    return WrkRun(
        server=first.server,
        endpoint=first.endpoint,
        round=first.round,
        rps=requests / seconds if seconds else 0.0,
        requests=requests,
        seconds=round(seconds, 2),
        p50_ms=median([x.p50_ms for x in slices]),
        p90_ms=median([x.p90_ms for x in slices]),
        p99_ms=median([x.p99_ms for x in slices]),
        p999_ms=median([x.p999_ms for x in slices]),
        max_ms=max(x.max_ms for x in slices),
        mean_ms=sum(x.mean_ms * x.requests for x in slices) / max(1, requests),
        bytes_per_request=sum(x.bytes_per_request * x.requests for x in slices) / max(1, requests),
        errors={k: sum(x.errors[k] for x in slices) for k in first.errors},
        cores={k: round(sum(x.cores.get(k, 0.0) for x in slices) / len(slices), 2) for k in sorted(keys)},
    )


# ------------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def servers(dsn: str, log_dir: Path, probe_path: str) -> Iterator[dict[str, tuple[Proc, str]]]:
    """Both servers (API and baseline) on free ports, started as ./dev up starts the API."""
    prefix = f"md:bench:{NAME}:{PID}:"
    env = api_env(dsn, prefix, WS_LIMITS_ENV)
    started: dict[str, tuple[Proc, str]] = {}
    try:
        for name, factory in SERVERS.items():
            port = free_port()
            started[name] = (
                Proc(name, uvicorn_args(factory, port), env, log_dir),
                f"http://127.0.0.1:{port}",
            )
        for proc, url in started.values():
            wait_http(url + probe_path, 90, [proc])
        yield started
    finally:
        for proc, _ in started.values():
            proc.stop()


def same_bodies(urls: dict[str, str], paths: Sequence[str]) -> dict[str, int]:
    """Both servers answer `paths` with the same JSON (apart from the read instant); sizes in bytes.

    Raises:
        AssertionError: the baseline does not do the same work as the API.
    """
    sizes: dict[str, int] = {}
    for path in paths:
        bodies = {}
        for name, url in urls.items():
            r = httpx.get(url + path, timeout=10)
            r.raise_for_status()
            body = r.json()
            body.pop("as_of", None)  # /history: the instant of the read
            bodies[name] = body
            sizes[f"{name} {path}"] = len(r.content)
        if bodies["api"] != bodies["baseline"]:
            raise AssertionError(f"{path}: the baseline's body differs from the API's")
    return sizes


def _instants(entry: dict[str, Any]) -> dict[str, Any]:
    # Postgres writes `+00:00`, msgspec `Z`: the same instants
    return {
        k: datetime.fromisoformat(v) if k in ("ts", "as_of", "previous_as_of") and v else v
        for k, v in entry.items()
    }


def same_snapshots(urls: dict[str, str], symbol: str) -> None:
    """Both servers' WebSocket snapshots of `symbol` hold the same entries.

    Raises:
        AssertionError: the baseline does not do the same work as the API.
    """
    from websockets.sync.client import connect

    got = {}
    for name, url in urls.items():
        with connect(url.replace("http://", "ws://") + "/ws", compression=None) as ws:
            ws.send(json.dumps({"action": "subscribe", "bars": [symbol], "quotes": [symbol], "id": 1}))
            while (message := json.loads(ws.recv(timeout=10)))["type"] != "snapshot":
                pass
        got[name] = {k: [_instants(e) for e in message[k]] for k in ("bars", "quotes")}
    if got["api"] != got["baseline"] or not got["api"]["bars"] or not got["api"]["quotes"]:
        raise AssertionError(f"ws snapshot of {symbol}: the baseline's differs from the API's: {got}")


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------
def asgi_overhead() -> dict[str, dict[str, float]]:
    """CPU microseconds per request of the apps alone (tests/benchmarks/asgi_overhead.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.asgi_overhead", "--requests", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"asgi_overhead failed:\n{proc.stderr[-2000:]}")
    out: dict[str, dict[str, float]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def rows_from(
    runs: list[WrkRun], shape: str, sizes: dict[str, int], overhead: dict[str, dict[str, float]]
) -> list[Row]:
    rows: list[Row] = []
    light = {(r.server, r.endpoint): r for r in runs if r.round < 0}
    runs = [r for r in runs if r.round >= 0]
    for endpoint in [*ENDPOINTS, WS_ENDPOINT]:
        api = [r for r in runs if r.endpoint == endpoint and r.server == "api"]
        base = [r for r in runs if r.endpoint == endpoint and r.server == "baseline"]
        light_api, light_base = light.get(("api", endpoint)), light.get(("baseline", endpoint))
        ratios = [a.rps / b.rps for a, b in zip(api, base, strict=True)]
        rps_ratio = median(ratios)
        api_rps, base_rps = median([r.rps for r in api]), median([r.rps for r in base])
        api_p99, base_p99 = median([r.p99_ms for r in api]), median([r.p99_ms for r in base])
        server_cores = median([r.cores.get("server", 0.0) for r in api])
        api_cpu = 1e6 * server_cores / api_rps if api_rps else float("nan")
        base_cpu = (
            1e6 * median([r.cores.get("server", 0.0) for r in base]) / base_rps if base_rps else float("nan")
        )
        apps = overhead.get(endpoint, {})
        extra = apps.get("api", 0.0) - apps.get("baseline", 0.0)
        floor_extra = apps.get("bare_litestar", 0.0) - apps.get("baseline", 0.0)
        ceiling = base_cpu / (base_cpu + extra) if extra > 0 else 1.0
        why = None
        target = RPS_TARGETS[endpoint]
        if rps_ratio < target:
            why = (
                f"in-process, without server or database, the API's framework and handler take "
                f"{apps.get('api', 0):.1f} us of CPU per request, the Starlette app "
                f"{apps.get('baseline', 0):.1f} us and a bare Litestar app (two routes, no middleware) "
                f"{apps.get('bare_litestar', 0):.1f} us. "
                f"With the baseline's whole request at {base_cpu:.0f} us of server CPU, the API's fixed "
                f"{extra:.1f} us more cap the ratio at {ceiling:.2f}x (Litestar itself: "
                f"{base_cpu / (base_cpu + max(floor_extra, 0.0)):.2f}x)"
            )
        common = {
            "shape": shape,
            "api_rps_per_round": [round(r.rps) for r in api],
            "baseline_rps_per_round": [round(r.rps) for r in base],
            "ratio_per_round": [round(x, 3) for x in ratios],
            "api_p50_p90_p99_ms": [[round(r.p50_ms, 2), round(r.p90_ms, 2), round(r.p99_ms, 2)] for r in api],
            "baseline_p50_p90_p99_ms": [
                [round(r.p50_ms, 2), round(r.p90_ms, 2), round(r.p99_ms, 2)] for r in base
            ],
            "bytes_per_response": {k: v for k, v in sizes.items() if endpoint in k},
            "api_cores_per_round": [r.cores for r in api],
            "baseline_cores_per_round": [r.cores for r in base],
            "api_server_cpu_us_per_request": round(api_cpu, 1),
            "baseline_server_cpu_us_per_request": round(base_cpu, 1),
            "asgi_cpu_us_per_request": apps,
            "ratio_ceiling_from_fixed_overhead": round(ceiling, 3),
            "limit": why,
        }
        rows.append(
            Row(
                benchmark=f"api: {endpoint} requests/s",
                figure=f"{si(api_rps)} req/s",
                baseline=f"Starlette {si(base_rps)} req/s",
                ratio=rps_ratio,
                target=f">= {target}x baseline",
                met=rps_ratio >= target,
                details=common,
            )
        )
        little_ms = 1000 * CONNECTIONS / api_rps if api_rps else float("nan")
        base_little_ms = 1000 * CONNECTIONS / base_rps if base_rps else float("nan")
        limit = None
        if api_p99 >= P99_TARGET_MS and base_p99 >= P99_TARGET_MS:
            limit = (
                f"the baseline misses it too (p99 {base_p99:.1f} ms): with {CONNECTIONS} requests in flight "
                f"the mean latency is {CONNECTIONS}/throughput = {base_little_ms:.1f} ms for the baseline, "
                f"{little_ms:.1f} ms for the API (Little's law); a p99 under {P99_TARGET_MS:g} ms needs "
                f"more than {1000 * CONNECTIONS / P99_TARGET_MS:,.0f} req/s. The API process used "
                f"{server_cores:.2f} cores (one Python thread: at most 1), Postgres "
                f"{median([r.cores.get('postgres', 0.0) for r in api]):.2f}, wrk "
                f"{median([r.cores.get('wrk', 0.0) for r in api]):.2f}, of "
                f"{api[0].cores.get('available', 0):g}"
            )
            if light_api is not None and light_base is not None:
                limit += (
                    f". With {LIGHT_CONNECTIONS} connections (nothing queues) the p99 is "
                    f"{light_api.p99_ms:.1f} ms for the API, {light_base.p99_ms:.1f} ms for the baseline"
                )
        rows.append(
            Row(
                benchmark=f"api: {endpoint} p99",
                figure=f"{api_p99:.1f} ms",
                baseline=f"Starlette {base_p99:.1f} ms",
                ratio=api_p99 / base_p99 if base_p99 else None,
                target=f"< {P99_TARGET_MS:g} ms",
                met=api_p99 < P99_TARGET_MS,
                details={
                    "api_p99_per_round_ms": [round(r.p99_ms, 2) for r in api],
                    "baseline_p99_per_round_ms": [round(r.p99_ms, 2) for r in base],
                    "api_mean_latency_ms": round(median([r.mean_ms for r in api]), 2),
                    "littles_law_mean_ms": round(little_ms, 2),
                    "baseline_littles_law_mean_ms": round(base_little_ms, 2),
                    "limit": limit,
                    f"at_{LIGHT_CONNECTIONS}_connections": {
                        name: {"rps": round(r.rps), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}
                        for name, r in (("api", light_api), ("baseline", light_base))
                        if r is not None
                    },
                    "runs": [asdict(r) for r in api + base],
                },
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> list[Row]:
    seconds, rounds, count = float(args.api_seconds), int(args.rounds), int(getattr(args, "api_symbols", 300))
    runs: list[WrkRun] = []
    try:
        async with bench_db(NAME) as d:
            log(f"api: seeding {count} symbols")
            seeded = await seed(d.dsn, count)
            shape = (
                f"{count} symbols x {seeded.bars_per_symbol} 1m bars (the {MIC} session of "
                f"{seeded.session_open.date()}) + 1 quote each; wrk {THREADS} thread, {CONNECTIONS} "
                f"connections, {seconds:g} s per run, random symbol per request, {rounds} rounds alternated"
            )
            with temp_dir("md-bench-api-") as tmp:
                scripts = {}
                for endpoint, template in ENDPOINTS.items():
                    scripts[endpoint] = tmp / f"{endpoint}.lua"
                    scripts[endpoint].write_text(lua_script([template.format(s) for s in seeded.symbols]))
                scripts[WS_ENDPOINT] = tmp / f"{WS_ENDPOINT}.symbols"
                scripts[WS_ENDPOINT].write_text(",".join(seeded.symbols))
                probe = ENDPOINTS["price"].format(seeded.symbols[0])
                with servers(d.dsn, tmp, probe) as started:
                    urls = {name: url for name, (_, url) in started.items()}
                    log("api: CPU per request of the apps alone (asgi_overhead)")
                    overhead = asgi_overhead()
                    log(f"api: {overhead}")
                    sizes = same_bodies(urls, [t.format(seeded.symbols[1]) for t in ENDPOINTS.values()])
                    same_snapshots(urls, seeded.symbols[2])

                    def meter(server: str) -> CpuMeter:
                        proc = started[server][0]
                        return CpuMeter(
                            processes={"server": lambda: [proc.pid]}, database=d.name, waited_label="wrk"
                        )

                    log("api: warming up both servers")
                    for endpoint in scripts:
                        for server in SERVERS:
                            run_wrk(urls[server], scripts[endpoint], WARMUP_SECONDS, meter(server))
                    slices = max(1, round(seconds / SLICE_SECONDS))
                    for rnd in range(rounds):
                        for endpoint in scripts:
                            parts: dict[str, list[WrkRun]] = {server: [] for server in SERVERS}
                            for i in range(slices):
                                flip = (rnd + i) % 2 == 1
                                for server in reversed(SERVERS) if flip else SERVERS:
                                    url, script = urls[server], scripts[endpoint]
                                    parts[server].append(
                                        measure(
                                            server,
                                            endpoint,
                                            rnd,
                                            url,
                                            script,
                                            seconds / slices,
                                            meter(server),
                                            quiet=True,
                                        )
                                    )
                            for server in SERVERS:
                                runs.append(combine(parts[server]))
                                log_run(runs[-1])
                    for endpoint in scripts:
                        for server in SERVERS:
                            light = min(seconds, 4.0)
                            url, script = urls[server], scripts[endpoint]
                            runs.append(
                                measure(
                                    server, endpoint, -1, url, script, light, meter(server), LIGHT_CONNECTIONS
                                )
                            )
    finally:
        await redis_cleanup(f"md:bench:{NAME}:{PID}:")
    return rows_from(runs, shape, sizes, overhead)
