"""The API as `./dev up` runs it (`python -m api.serve`, MD_API_WORKERS processes) on a free port,
and which of its processes holds a given client connection.

The kernel hands each new connection on the shared listening socket to one worker; tests that
need a client on every worker open connections until each has one, and ask the operating
system (psutil: the worker's sockets) which worker accepted each.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.benchmarks.harness import Proc, api_workers, free_port
from tests.conftest import ROOT


@dataclass
class ApiProcesses:
    proc: Proc
    port: int

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def workers(self) -> list[int]:
        """Process ids of the API processes serving now."""
        return api_workers(self.proc.pid)

    def serving(self, client_port: int) -> int | None:
        """The worker holding the server side of the client connection from `client_port`."""
        for pid in self.workers():
            with contextlib.suppress(psutil.Error):
                for c in psutil.Process(pid).net_connections(kind="tcp"):
                    if c.laddr and c.laddr.port == self.port and c.raddr and c.raddr.port == client_port:
                        return pid
        return None


def wait_ready(api: ApiProcesses, workers: int, within: float = 90.0) -> None:
    """Until `workers` processes run and the API answers /health."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not api.proc.alive():
            raise AssertionError(f"the API exited with {api.proc.popen.returncode}:\n{api.proc.tail()}")
        if len(api.workers()) == workers:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(api.http("/health"), timeout=2).status_code == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"the API did not start {workers} processes within {within} s:\n{api.proc.tail()}")


@contextlib.contextmanager
def api_processes(workers: int, env: dict[str, str] | None = None) -> Iterator[ApiProcesses]:
    """`python -m api.serve` with MD_API_WORKERS=`workers`; stopped (SIGTERM, as Ctrl-C) on exit."""
    port = free_port()
    full_env = {**os.environ, "MD_API_WORKERS": str(workers), "PYTHONPATH": str(ROOT), **(env or {})}
    args = [sys.executable, "-m", "api.serve", "--port", str(port), "--log-level", "warning"]
    with tempfile.TemporaryDirectory(prefix="md-api-processes-") as logs:
        api = ApiProcesses(Proc("api", args, full_env, Path(logs)), port)
        try:
            wait_ready(api, workers)
            yield api
        finally:
            api.proc.stop(grace=20)
