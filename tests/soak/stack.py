"""The soak's own stack: `./dev up --restart` on private ports, databases, AIRFLOW_HOME and Redis.

Everything the soak starts is its own, so it can run beside a `./dev up` and the test suite on
one machine: databases `market_data_soak_<tag>` and `..._airflow` on the machine's Postgres
(dropped afterwards unless kept), a redis-server on a free port (tests/faults/servers.py; the soak
stops it for a minute: never the machine's shared one), free ports for the API and Airflow, and an
MD_STATE_DIR / AIRFLOW_HOME in a temporary folder. `./dev up --restart` starts the
components exactly as a user's `./dev up` does and starts a component again when it exits
(the soak kills them). Statsd goes to a UDP port the soak reads (`StatsdTap`): every provider
call is counted there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import asyncpg
import httpx

from market_data.db import dsn_with_database
from market_data.metrics.statsd import statsd_name
from tests.faults.servers import PrivateRedis

ROOT = Path(__file__).resolve().parents[2]
BASE_DSN = os.environ.get("MD_SOAK_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StatsdTap(asyncio.DatagramProtocol):
    """Reads the stack's statsd packets; counts provider calls per provider per second."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        self._names: dict[str, str] = {}

    def watch(self, provider: str) -> None:
        for endpoint in ("bars", "quotes"):
            name = statsd_name("provider_latency_ms", {"provider": provider, "endpoint": endpoint})
            self._names[name] = provider

    def datagram_received(self, data: bytes, addr: object) -> None:
        now = int(time.time())
        for line in data.decode(errors="replace").splitlines():
            stat, _, rest = line.partition(":")
            provider = self._names.get(stat.removeprefix("market_data."))
            if provider is None:
                continue
            rate = re.search(r"\|@([0-9.]+)", rest)
            self.calls[provider][now] += 1.0 / float(rate.group(1)) if rate else 1.0

    def max_per_window(self, provider: str, window: int = 60) -> float:
        per_second = self.calls.get(provider, {})
        if not per_second:
            return 0.0
        lo, hi = min(per_second), max(per_second)
        best, running = 0.0, 0.0
        for t in range(lo, hi + 1):
            running += per_second.get(t, 0.0) - per_second.get(t - window, 0.0)
            best = max(best, running)
        return best


class SoakStack:
    """`./dev up --restart` with everything private (module docstring)."""

    def __init__(self, tag: str, *, api_workers: int = 2, keep: bool = False) -> None:
        self.tag = tag
        self.keep = keep
        self.api_workers = api_workers
        self.dir = Path(tempfile.mkdtemp(prefix=f"md-soak-{tag}-"))
        self.state = self.dir / "state"
        self.home = self.dir / "airflow"
        self.api_port, self.airflow_port, self.statsd_port = free_port(), free_port(), free_port()
        self.redis = PrivateRedis()
        self.db_name = f"market_data_soak_{tag}"
        self.dsn = dsn_with_database(BASE_DSN, self.db_name)
        self.airflow_dsn = dsn_with_database(BASE_DSN, self.db_name + "_airflow")
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "MD_STATE_DIR": str(self.state),
            "AIRFLOW_HOME": str(self.home),
            "MD_API_PORT": str(self.api_port),
            "AIRFLOW_PORT": str(self.airflow_port),
            "DATABASE_URL": self.dsn,
            "AIRFLOW_DATABASE_URL": self.airflow_dsn,
            "REDIS_URL": self.redis.url,
            "MARKET_DATA_REDIS_PREFIX": f"md:soak:{tag}:",
            "STATSD_HOST": "127.0.0.1",
            "STATSD_PORT": str(self.statsd_port),
            "MD_API_WORKERS": str(api_workers),
            "MD_UP_RESTART": "1",
            "MD_WS_MAX_CONNECTIONS_PER_ADDRESS": "200",
            # the task log server of a `./dev up` on this machine holds 8793
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        self.env.pop("DATABASE_READ_URL", None)
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.ops_token = ""

    # ------------------------------------------------------------------------------------------
    def start(self, within: float = 600) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)  # Ctrl-C, or an error before the soak's own clean-up
        self.redis.start()
        self.proc = subprocess.Popen(
            [str(ROOT / "dev"), "up", "--restart"],
            cwd=ROOT,
            env=self.env,
            stdout=(self.dir / "up.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"./dev up exited: {self.tail('up.log')}")
            if "market-data is up" in self.tail("up.log", 60):
                break
            time.sleep(2)
        else:
            raise RuntimeError(f"./dev up not ready in {within:g} s: {self.tail('up.log')}")
        secrets = (self.state / "secrets.env").read_text()
        token = os.environ.get("MARKET_DATA_OPS_TOKEN") or re.search(r"GENERATED_OPS_TOKEN=(\S+)", secrets)
        self.ops_token = token if isinstance(token, str) else token.group(1) if token else ""

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / name if (self.dir / name).exists() else self.state / "logs" / name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def sessions(self) -> set[int]:
        """The pid of every component start (each its own session), the killed ones' too."""
        path = self.state / "components"
        if not path.exists():
            return set()
        return {
            int(pid) for line in path.read_text().splitlines() if (pid := line.partition(" ")[2]).isdigit()
        }

    def components(self) -> dict[str, int]:
        """Component name -> pid of its running process (the newest start of each)."""
        out: dict[str, int] = {}
        path = self.state / "components"
        if path.exists():
            for line in path.read_text().splitlines():
                name, _, pid = line.partition(" ")
                if pid.isdigit():
                    out[name] = int(pid)
        return out

    def stop(self) -> None:
        """Stop `./dev up` (it stops its components) and the Redis; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        self.redis.stop()

    async def drop_databases(self) -> None:
        if self.keep:
            return
        conn = await asyncpg.connect(BASE_DSN)
        try:
            for name in (self.db_name, self.db_name + "_airflow"):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.api + "/ready", timeout=3).status_code == 200
        return False
