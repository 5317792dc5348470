"""Several API processes (`MD_API_WORKERS=2 python -m api.serve`, as `./dev up` starts them):
every process fans every notification out, and `/metrics` of any process shows the whole API.

Real processes on a free port, real HTTP and WebSockets; which process holds a connection is
asked of the operating system (tests/api/processes.py).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import websockets
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from market_data.ingest.pit_write import write_quotes
from market_data.metrics.catalog import WS_DROPPED_MESSAGES_TOTAL
from market_data.records import Quote, utcnow
from tests.api.processes import ApiProcesses, api_processes
from tests.api.ws_harness import metric_samples, notify_bar, recv, subscribe
from tests.conftest import ROOT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Scraped /metrics samples: (name, sorted labels) -> value (`metric_samples`)."""

PRICE_ROUTE = "/stocks/{symbol}/price"
JOB = """
INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status)
VALUES ($1, '1m', now() - interval '2 hours', now() - interval '1 hour', 'T0', 1, 'gap', 'queued')"""


def get(api: ApiProcesses, path: str) -> tuple[int, bytes, int | None]:
    """(status, body, the process that answered) of one request on a connection of its own."""
    c = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        # the connection is still open (keep-alive): the process that answered holds it
        return r.status, body, api.serving(c.sock.getsockname()[1])
    finally:
        c.close()


def from_every_process(api: ApiProcesses, path: str, tries: int = 400) -> dict[int, bytes]:
    """One answer to `path` from each API process (new connections until each has answered)."""
    out: dict[int, bytes] = {}
    workers = set(api.workers())
    for _ in range(tries):
        status, body, pid = get(api, path)
        assert status == 200, body[:300]
        if pid is not None:
            out.setdefault(pid, body)
        if set(out) >= workers:
            return out
    raise AssertionError(f"{tries} connections reached only processes {sorted(out)} of {sorted(workers)}")


async def clients_on_every_process(
    api: ApiProcesses, per_process: int = 1, tries: int = 80
) -> dict[int, list[websockets.ClientConnection]]:
    """WebSocket clients until every API process holds at least `per_process` of them."""
    by_process: dict[int, list[websockets.ClientConnection]] = {pid: [] for pid in api.workers()}
    for _ in range(tries):
        ws = await websockets.connect(api.ws(), compression=None, ping_interval=None)
        await ws.send('{"action": "ping"}')
        await recv(ws)  # answered: the process has accepted and registered the connection
        pid = api.serving(ws.local_address[1])
        assert pid in by_process, f"client served by {pid}, not one of {sorted(by_process)}"
        by_process[pid].append(ws)
        if all(len(v) >= per_process for v in by_process.values()):
            return by_process
    counts = {pid: len(v) for pid, v in by_process.items()}
    raise AssertionError(f"{tries} WebSocket connections were spread {counts}")


async def scrape_until(api: ApiProcesses, check: Callable[[Samples], bool], within: float = 10.0) -> Samples:
    """Scrape /metrics (any process) until `check(samples)` holds."""
    deadline = time.monotonic() + within
    while True:
        status, body, _ = get(api, "/metrics")
        assert status == 200
        got = metric_samples(body.decode())
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics never satisfied the check; last scrape:\n{body.decode()[:3000]}")
        await asyncio.sleep(0.1)


async def store_quote(conn, symbol: str = "AAPL", last: float = 101.5) -> None:
    quote = Quote(symbol=symbol, ts=utcnow(), provider="synthetic", last=last)
    await write_quotes(conn, [quote], policy_version=1)


async def close_all(clients: dict[int, list[websockets.ClientConnection]]) -> None:
    for group in clients.values():
        for ws in group:
            await ws.close()


# ------------------------------------------------------------------------------------------------
async def test_every_api_process_delivers_every_notification_to_its_clients(conn) -> None:
    with api_processes(2) as api:
        by_process = await clients_on_every_process(api, per_process=2)
        clients = [ws for group in by_process.values() for ws in group]
        for ws in clients:
            await subscribe(ws, bars=["AAPL"])
        for seq in range(25):
            await notify_bar(conn, "AAPL", seq)
        for ws in clients:
            assert [(await recv(ws))["seq"] for _ in range(25)] == list(range(25))
        # every process's clients and deliveries, whichever process answers the scrape
        got = await scrape_until(
            api, lambda s: s.get(("ws_publish_latency_ms_count", ())) == 25 * len(clients)
        )
        assert got[("ws_clients_gauge", ())] == len(clients)
        assert got[("ws_dropped_messages_total", ())] == 0
        await close_all(by_process)


async def test_metrics_of_any_process_add_up_every_process_and_read_postgres_once(conn) -> None:
    await store_quote(conn)
    for symbol in ("AAPL", "MSFT", "NVDA"):
        await conn.execute(JOB, symbol)
    with api_processes(2) as api:
        served: Counter[int] = Counter()
        for _ in range(400):
            status, _, pid = get(api, "/stocks/AAPL/price")
            assert status == 200 and pid is not None
            served[pid] += 1
            if sum(served.values()) >= 40 and len(served) == 2 and min(served.values()) >= 5:
                break
        assert len(served) == 2, f"one process served every request: {served}"
        total = sum(served.values())
        scrapes = from_every_process(api, "/metrics")
        assert len(scrapes) == 2
        for pid, body in scrapes.items():
            got = metric_samples(body.decode())
            price = {
                labels: v
                for (name, labels), v in got.items()
                if name == "http_request_duration_seconds_count" and ("route", PRICE_ROUTE) in labels
            }
            # the histogram of both processes, added up, whichever process was asked
            assert sum(price.values()) == total, (pid, price, served)
            assert got[("http_request_duration_seconds_bucket", price_labels(price, "+Inf"))] == total
            # read from Postgres once per scrape, by the process answering: not once per process
            assert got[("backfill_queue_depth", (("tier", "T0"),))] == 3
            versions = [labels for name, labels in got if name == "policy_version_info"]
            assert len(versions) == 1


def price_labels(price: dict[tuple[tuple[str, str], ...], float], le: str) -> tuple[tuple[str, str], ...]:
    (labels,) = price
    return tuple(sorted((*labels, ("le", le))))


async def test_a_killed_process_is_replaced_and_only_live_processes_count_clients(conn) -> None:
    await store_quote(conn)
    with api_processes(2) as api:
        by_process = await clients_on_every_process(api, per_process=1)
        for group in by_process.values():
            for ws in group:
                await subscribe(ws, bars=["AAPL"])
        requests = 0
        for _ in range(20):
            assert get(api, "/stocks/AAPL/price")[0] == 200
            requests += 1
        victim, survivor = sorted(by_process)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (len(api.workers()) == 2 and victim not in api.workers()):
            assert time.monotonic() < deadline, f"process {victim} was not replaced:\n{api.proc.tail()}"
            await asyncio.sleep(0.2)
        # the survivor's clients are the API's clients now; the dead process's requests still count
        got = await scrape_until(
            api, lambda s: s.get(("ws_clients_gauge", ())) == len(by_process[survivor]), within=60
        )
        price = sum(
            v
            for (name, labels), v in got.items()
            if name == "http_request_duration_seconds_count" and ("route", PRICE_ROUTE) in labels
        )
        assert price == requests
        await notify_bar(conn, "AAPL", 7)
        for ws in by_process[survivor]:
            assert (await recv(ws))["seq"] == 7
        for ws in by_process[victim]:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        await close_all(by_process)


def _plant_stale_counter(folder: Path, value: float) -> Path:
    """A counter file as an earlier run's process (pid 999999) would have left it."""
    path = folder / "counter_999999.db"
    d = MmapedDict(str(path))
    name = WS_DROPPED_MESSAGES_TOTAL.name
    key = mmap_key(name.removesuffix("_total"), name, [], [], WS_DROPPED_MESSAGES_TOTAL.help)
    d.write_value(key, value, 0.0)
    d.close()
    return path


def test_the_metrics_directory_is_emptied_at_start_and_at_exit(md_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "api-metrics"
    folder.mkdir()
    stale = _plant_stale_counter(folder, 1000.0)
    with api_processes(2, env={"PROMETHEUS_MULTIPROC_DIR": str(folder)}) as api:
        assert not stale.exists()
        got = metric_samples(from_every_process(api, "/metrics").popitem()[1].decode())
        assert got[("ws_dropped_messages_total", ())] == 0
        assert any(folder.iterdir())  # the processes' own files
    assert list(folder.iterdir()) == []


def test_without_a_given_directory_a_temporary_one_is_made_and_removed(md_dsn: str) -> None:
    with api_processes(2, env={"PROMETHEUS_MULTIPROC_DIR": ""}) as api:
        dirs = {psutil.Process(pid).environ().get("PROMETHEUS_MULTIPROC_DIR") for pid in api.workers()}
        assert len(dirs) == 1
        (made,) = dirs
        assert made and Path(made).is_dir()
    assert not Path(made).exists()


@pytest.mark.parametrize(("value", "why"), [("two", "is not a whole number"), ("0", "out of range")])
def test_a_bad_worker_count_is_refused_naming_the_variable(value: str, why: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "api.serve"],
        cwd=ROOT,
        env={**os.environ, "MD_API_WORKERS": value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "MD_API_WORKERS" in proc.stderr and why in proc.stderr
