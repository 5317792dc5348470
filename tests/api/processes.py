"""The API as `./dev up` runs it (`python -m api.serve`, MD_API_WORKERS processes) on a free port,
and which of its processes holds a given client connection.

The kernel hands each new connection on the shared listening socket to one worker; tests that
need a client on every worker open connections until each has one, and ask the operating
system (psutil: the worker's sockets) which worker accepted each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiProcesses:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def workers(self) -> list[int]:
        """Process ids of the API processes serving now (uvicorn's spawned workers)."""
        try:
            children = psutil.Process(self.popen.pid).children()
        except psutil.Error:
            return []
        out = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(child.cmdline()) and child.is_running():
                    out.append(child.pid)
        return sorted(out)

    def serving(self, client_port: int) -> int | None:
        """The worker holding the server side of the client connection from `client_port`."""
        for pid in self.workers():
            with contextlib.suppress(psutil.Error):
                for c in psutil.Process(pid).net_connections(kind="tcp"):
                    if c.laddr and c.laddr.port == self.port and c.raddr and c.raddr.port == client_port:
                        return pid
        return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(api: ApiProcesses, workers: int, within: float = 90.0) -> None:
    """Until `workers` processes run and the API answers /health."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if api.popen.poll() is not None:
            raise AssertionError(f"the API exited with {api.popen.returncode}:\n{api.tail()}")
        if len(api.workers()) == workers:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(api.http("/health"), timeout=2).status_code == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"the API did not start {workers} processes within {within} s:\n{api.tail()}")


@contextlib.contextmanager
def api_processes(workers: int, env: dict[str, str] | None = None) -> Iterator[ApiProcesses]:
    """`python -m api.serve` with MD_API_WORKERS=`workers`; SIGTERM (and wait) on exit."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="md-api-processes-", suffix=".log")[1])
    full_env = {**os.environ, "MD_API_WORKERS": str(workers), "PYTHONPATH": str(ROOT), **(env or {})}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "api.serve", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = ApiProcesses(popen, port, log)
    try:
        wait_ready(api, workers)
        yield api
    finally:
        stop(api)
        log.unlink(missing_ok=True)


def stop(api: ApiProcesses, grace: float = 20.0) -> int:
    """SIGTERM to the supervisor (as Ctrl-C or `docker stop`), then its exit code."""
    if api.popen.poll() is None:
        api.popen.send_signal(signal.SIGTERM)
        try:
            api.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(api.popen.pid, signal.SIGKILL)
            api.popen.wait(timeout=10)
    return api.popen.returncode
