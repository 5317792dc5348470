"""A real Airflow (api-server, scheduler, dag-processor) for end-to-end tests and benchmarks.

LocalExecutor by default; with `celery_workers=N`, CeleryExecutor and N `airflow celery worker`
processes on this machine, with the settings `./dev up --celery-workers N` gives them
(`market_data.airflow.executor`): the broker's keys under the run's Redis prefix, each worker's
task instances recording its name (`md-worker-<i>`) as their host name. It runs on the caller's
own metadata database and AIRFLOW_HOME, on a free port, and is stopped when the test ends: every
component's process group, then whatever is left in their sessions (task processes, which
Airflow's supervisor puts in process groups of their own).
"""

from __future__ import annotations

import contextlib
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

from market_data.airflow.executor import celery_env, worker_args, worker_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowStack:
    def __init__(
        self, env: dict[str, str], home: Path, *, celery_workers: int = 0, worker_concurrency: int = 4
    ) -> None:
        self.port = free_port()
        self.home = home
        self.env = {
            **env,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            # the scheduler (LocalExecutor) or the first worker serves task logs: not on 8793,
            # which a `./dev up` on this machine may hold
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        self.celery_workers = celery_workers
        if celery_workers:
            self.env.update(
                celery_env(
                    redis_url=self.env["REDIS_URL"],
                    redis_prefix=self.env["MARKET_DATA_REDIS_PREFIX"],
                    sql_alchemy_conn=self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                    concurrency=worker_concurrency,
                )
            )
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

    @property
    def workers(self) -> list[str]:
        """Names of the Celery workers (also the host name their task instances record)."""
        return [worker_name(i) for i in range(1, self.celery_workers + 1)]

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        for name, args in (
            ("api-server", ["api-server", "--port", str(self.port)]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ):
            self._spawn(name, args)
        for i, name in enumerate(self.workers, start=1):
            self._spawn(name, worker_args(i, serve_logs=i == 1), {**self.env, "MD_WORKER_NAME": name})
        deadline = time.monotonic() + 180
        waiting = {"api-server", *self.workers}
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.tail(name)}")
            try:
                if (
                    httpx.get(f"http://localhost:{self.port}/api/v2/monitor/health", timeout=2).status_code
                    == 200
                ):
                    waiting.discard("api-server")
            except httpx.HTTPError:
                pass
            # a Celery worker logs "<node name> ready." once it consumes from the broker
            waiting -= {w for w in self.workers if w in waiting and " ready." in self.tail(w, 200)}
            if not waiting:
                return
            time.sleep(1)
        raise RuntimeError(f"not ready in 180 s: {sorted(waiting)}: " + self.tail(min(waiting)))

    def kill_worker(self, name: str) -> int:
        """SIGKILL a Celery worker and everything it started (its pool, task supervisors and
        task processes), as a machine that dies would; returns how many processes died."""
        proc = self.procs[name]
        members = session_members({proc.pid}, time.time())
        for p in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        proc.wait(10)
        return len(members)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        sessions = {p.pid for p in self.procs.values()}
        stopping_at = time.time()
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        stop_sessions(sessions, stopping_at)

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


def session_members(sessions: set[int], created_before: float) -> list[int]:
    """Pids of the live processes in `sessions` created before `created_before`.

    Each component starts a session of its own (its pid is the session id); a process created
    after `created_before` cannot be one of ours (the system may reuse a session id once its
    leader is gone).
    """
    import psutil

    out = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) not in sessions:
                continue
            p = psutil.Process(pid)
            if p.create_time() <= created_before and p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except (OSError, psutil.Error):
            continue
    return out


def stop_sessions(sessions: set[int], created_before: float, grace: float = 10.0) -> None:
    """End what is left of the stack's sessions after its process groups were stopped.

    Airflow's task supervisor puts every task process into a process group of its own, so a
    task whose supervisor was killed outlives the groups' signals. Those, and only those, are
    found by their session id and stopped by pid.
    """
    import psutil

    left = []
    for pid in session_members(sessions, created_before):
        with contextlib.suppress(psutil.Error):
            left.append(psutil.Process(pid))
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
