"""A real Airflow (api-server, scheduler, dag-processor; LocalExecutor) for end-to-end tests.

It runs on the test run's own metadata database and AIRFLOW_HOME, on a free port, and is
stopped (process groups killed) when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowStack:
    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.port = free_port()
        self.home = home
        self.env = {
            **env,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # as ./dev: the UI's admin, and the service's own user (asset events, integrity)
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,market_data_api:op",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = home / "stack-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._token: str | None = None

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor")) -> None:
        """Start the components (each in its own process group) and wait for the api-server."""
        commands = {
            "api-server": ["api-server", "--port", str(self.port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
        }
        for name in components:
            args = commands[name]
            log = (self.logs / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.tail(name)}")
            try:
                if (
                    httpx.get(f"http://localhost:{self.port}/api/v2/monitor/health", timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"api-server not healthy in 180 s: {self.tail('api-server')}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def credentials_file(self) -> Path:
        """The simple auth manager's generated passwords (admin and market_data_api)."""
        return self.home / "simple_auth_manager_passwords.json.generated"

    def token(self) -> str:
        if self._token is None:
            passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            r = httpx.post(
                f"http://localhost:{self.port}/auth/token",
                json={"username": "admin", "password": passwords["admin"]},
                timeout=10,
            )
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(
            method,
            f"http://localhost:{self.port}/api/v2{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in states:
                return state
            time.sleep(2)
        raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout} s\n{self.tail('scheduler')}")
