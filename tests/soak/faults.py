"""The soak's faults, on a schedule spread over the load window, and how long each took to heal.

Provider faults go through the policy (`POST /ops/reload`, the way an operator would): a
synthetic outage window, a 429 storm, a burst of revisions, dropped (late) bars; each is
undone by reloading the previous policy. Process faults are SIGKILLs: the scheduler, one task
process (a child of the scheduler running a task), the dag-processor, one API worker process
(`./dev up --restart` starts the components again; api.serve its workers). Postgres is shared
with the lead and other sessions on this machine, so it is not restarted: every backend of the
soak's two databases is terminated instead (what a restart does to the stack: every
connection, the API's LISTEN included, dropped at once). Redis is the soak's own redis-server,
stopped for 60 s.

A fault is healed at the first instant after it ended at which `/ready` answers 200 and a bar
was stored after it ended (ingestion runs again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import psutil

from tests.soak.load import Ops
from tests.soak.stack import BASE_DSN, SoakStack

REDIS_DOWN_SECONDS = 60.0


@dataclass
class Fault:
    name: str
    at: float
    """Seconds after the load started."""
    started: float | None = None
    ended: float | None = None
    healed: float | None = None
    detail: str = ""
    killed: int | None = None
    """The pid a SIGKILL fault killed."""

    @property
    def heal_seconds(self) -> float | None:
        if self.ended is None or self.healed is None:
            return None
        return round(self.healed - self.ended, 1)


def _set_fault(policy: str, key: str, value: str) -> str:
    """`policy` with `key = value` in [providers.synthetic.faults] (replacing the line there)."""
    head, sep, rest = policy.partition("[providers.synthetic.faults]")
    if not sep:
        raise ValueError("the policy has no [providers.synthetic.faults] section")
    section, nxt, tail = rest.partition("\n[")
    line = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
    section = (
        line.sub(f"{key} = {value}", section)
        if line.search(section)
        else section.rstrip("\n") + f"\n{key} = {value}\n"
    )
    return head + sep + section + nxt + tail


def _toml_instant(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Injector:
    def __init__(self, stack: SoakStack, ops: Ops, base_policy: str) -> None:
        self.stack = stack
        self.ops = ops
        self.base_policy = base_policy
        self._active: dict[str, dict[str, str]] = {}
        """Provider faults in force (they overlap): fault name -> its policy changes."""
        self._lock = asyncio.Lock()

    # -- provider faults through the policy ------------------------------------------------------
    async def _reload(self) -> int:
        async with self._lock:
            body = self.base_policy
            for changes in self._active.values():
                for k, v in changes.items():
                    body = _set_fault(body, k, v)
            return await self.ops.reload(body)

    async def _with_policy(self, fault: Fault, changes: dict[str, str], seconds: float) -> None:
        self._active[fault.name] = changes
        status = await self._reload()
        settings = ", ".join(f"{k}={v}" for k, v in changes.items())
        fault.detail = f"reload {status}; {settings} for {seconds:g} s"
        await asyncio.sleep(seconds)
        del self._active[fault.name]
        fault.detail += f"; undone {await self._reload()}"

    async def outage(self, fault: Fault, seconds: float = 90) -> None:
        now = datetime.now(UTC)
        window = (
            f"[{{ start = {_toml_instant(now)}, end = {_toml_instant(now + timedelta(seconds=seconds))} }}]"
        )
        await self._with_policy(fault, {"outages": window}, seconds)

    async def storm_429(self, fault: Fault, seconds: float = 60) -> None:
        await self._with_policy(fault, {"rate_429": "0.6", "retry_after_seconds": "1.0"}, seconds)

    async def revisions(self, fault: Fault, seconds: float = 120) -> None:
        await self._with_policy(fault, {"revision_rate": "0.5"}, seconds)

    async def dropped_bars(self, fault: Fault, seconds: float = 120) -> None:
        await self._with_policy(fault, {"drop_rate": "0.3", "drop_heal": '"3m"'}, seconds)

    # -- process faults ---------------------------------------------------------------------------
    def _kill(self, fault: Fault, pid: int, what: str) -> None:
        os.kill(pid, signal.SIGKILL)
        fault.killed = pid
        fault.detail = f"SIGKILL {what} (pid {pid})"

    async def kill_component(self, fault: Fault, name: str) -> None:
        pid = self.stack.components().get(name)
        if pid is None:
            fault.detail = f"{name}: not running"
            return
        self._kill(fault, pid, name)

    async def kill_task(self, fault: Fault, within: float = 150) -> None:
        """SIGKILL a task process (waits for one): LocalExecutor's workers are the scheduler's
        children, and each runs a task in a process of its own under it (`airflow worker -- <id>`)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pid = self.stack.components().get("airflow-scheduler")
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    for worker in psutil.Process(pid).children():
                        for task in worker.children():
                            cmd = " ".join(task.cmdline()).strip()
                            self._kill(fault, task.pid, f"task process `{cmd[:60]}`")
                            return
            await asyncio.sleep(0.2)
        fault.detail = "no task process seen within the wait"

    async def kill_api_worker(self, fault: Fault) -> None:
        """SIGKILL the API worker that holds the most client connections (the WebSocket clients'
        among them: they must reconnect and get a snapshot)."""
        pid = self.stack.components().get("api")
        if pid is None:
            fault.detail = "api: not running"
            return
        children = psutil.Process(pid).children()
        if not children:
            self._kill(fault, pid, "the API process")
            return

        def clients(p: psutil.Process) -> int:
            with contextlib.suppress(psutil.Error):
                return sum(
                    c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.stack.api_port
                    for c in p.net_connections(kind="tcp")
                )
            return 0

        target = max(children, key=clients)
        self._kill(fault, target.pid, f"the API worker process holding {clients(target)} client connections")

    async def postgres(self, fault: Fault) -> None:
        conn = await asyncpg.connect(BASE_DSN)
        try:
            n = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = ANY($1::text[]) "
                "AND pid <> pg_backend_pid()",
                [self.stack.db_name, self.stack.db_name + "_airflow"],
            )
        finally:
            await conn.close()
        fault.detail = f"terminated all {n} backends of the soak's databases (Postgres restart equivalent)"

    async def redis(self, fault: Fault, seconds: float = REDIS_DOWN_SECONDS) -> None:
        self.stack.redis.stop()
        fault.detail = f"the soak's redis-server stopped for {seconds:g} s"
        await asyncio.sleep(seconds)
        self.stack.redis.start()


def schedule(minutes: float, warmup: float) -> list[tuple[str, float]]:
    """(fault name, seconds after the load started): spread from the end of the warm-up to 80 %
    of the window (the rest lets the last ones heal before the drain)."""
    names = [
        "synthetic outage",
        "SIGKILL scheduler",
        "429 storm",
        "SIGKILL task process",
        "revisions",
        "SIGKILL dag-processor",
        "dropped bars",
        "SIGKILL API process",
        "Postgres: all backends terminated",
        "Redis down 60 s",
    ]
    first, last = warmup, max(warmup + 1, 0.8 * minutes * 60 - 60)
    step = (last - first) / max(1, len(names) - 1)
    return [(n, first + i * step) for i, n in enumerate(names)]


def runner(injector: Injector, name: str) -> Callable[[Fault], Awaitable[None]]:
    return {
        "synthetic outage": injector.outage,
        "SIGKILL scheduler": lambda f: injector.kill_component(f, "airflow-scheduler"),
        "429 storm": injector.storm_429,
        "SIGKILL task process": injector.kill_task,
        "revisions": injector.revisions,
        "SIGKILL dag-processor": lambda f: injector.kill_component(f, "airflow-dag-processor"),
        "dropped bars": injector.dropped_bars,
        "SIGKILL API process": injector.kill_api_worker,
        "Postgres: all backends terminated": injector.postgres,
        "Redis down 60 s": injector.redis,
    }[name]


async def newest_write(dsn: str) -> float | None:
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        conn = await asyncpg.connect(dsn, timeout=3)
        try:
            at = await conn.fetchval("SELECT max(as_of) FROM bars WHERE ts > now() - interval '1 hour'")
        finally:
            await conn.close()
        return at.timestamp() if at is not None else None
    return None


def api_workers(stack: SoakStack, besides: int | None) -> int:
    """Live API worker processes (api.serve's children) other than `besides` (a killed one)."""
    pid = stack.components().get("api")
    with contextlib.suppress(psutil.Error):
        if pid is not None:
            return sum(
                c.pid != besides and c.status() != psutil.STATUS_ZOMBIE
                for c in psutil.Process(pid).children()
            )
    return 0


async def watch_heal(stack: SoakStack, fault: Fault, within: float = 900) -> None:
    """Set `fault.healed`: /ready 200 and a bar stored after the fault ended (a killed API
    process: /ready 200 and every API worker running again)."""
    assert fault.ended is not None
    deadline = time.time() + within
    async with httpx.AsyncClient(timeout=3) as http:
        while time.time() < deadline:
            ok = False
            with contextlib.suppress(httpx.HTTPError):
                ok = (await http.get(stack.api + "/ready")).status_code == 200
            if ok and fault.name == "SIGKILL API process":
                if api_workers(stack, fault.killed) >= stack.api_workers:
                    fault.healed = time.time()
                    return
            elif ok:
                newest = await newest_write(stack.dsn)
                if newest is not None and newest > fault.ended:
                    fault.healed = time.time()
                    return
            await asyncio.sleep(1)
