"""What every benchmark shares: its own database, timing, processes, the results table and JSON.

Each benchmark works only on what it creates: a database `md_bench_<name>_<pid>` (and, for the
Airflow benchmarks, `md_bench_<name>_<pid>_airflow`), a Redis key prefix and temporary folders;
it drops and removes them at the end and stops every process it started. Traffic goes to
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from market_data import db

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"
BASE_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PID = os.getpid()


def log(message: str) -> None:
    print(f"  [{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    figure: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    """Absolute figures and how they were measured (JSON only)."""


def ratio(value: float, base: float) -> float:
    return value / base if base else float("nan")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def si(value: float, unit: str = "") -> str:
    """12345 -> '12.3k'; keeps three significant digits."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def render_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table (what the README's Performance section shows)."""
    head = ["benchmark", "figure", "baseline", "ratio", "target", "met?"]
    body = [
        [
            r.benchmark,
            r.figure,
            r.baseline,
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "**no**", None: "n/a"}[r.met],
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(b) for b in body)
    return "\n".join(out)


def machine_info(pg_dsn: str = BASE_DSN) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    import psutil

    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }

    async def pg() -> dict[str, str]:
        conn = await asyncpg.connect(db.dsn_with_database(pg_dsn, "postgres"))
        try:
            out = {"postgres": (await conn.fetchval("SHOW server_version")).split()[0]}
            for name in ("shared_buffers", "fsync", "synchronous_commit", "max_wal_size", "work_mem"):
                out[name] = await conn.fetchval(f"SHOW {name}")
            return out
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        info.update(asyncio.run(pg()))
    return info


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gb')} GB RAM, {m.get('os')}; "
        f"Python {m.get('python')}; PostgreSQL {m.get('postgres', '?')} (fsync={m.get('fsync', '?')}, "
        f"synchronous_commit={m.get('synchronous_commit', '?')}, "
        f"shared_buffers={m.get('shared_buffers', '?')}); "
        f"load average at start {m.get('load_avg_at_start')}"
    )


def write_results(
    rows: Sequence[Row], machine: dict[str, Any], wall_seconds: float, names: list[str]
) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC)
    doc = {
        "generated_at": stamp.isoformat(timespec="seconds"),
        "benchmarks": names,
        "wall_seconds": round(wall_seconds, 1),
        "machine": machine,
        "table": render_table(rows),
        "rows": [asdict(r) for r in rows],
    }
    text = json.dumps(doc, indent=2, default=str)
    latest = RESULTS_DIR / "latest.json"
    latest.write_text(text)
    (RESULTS_DIR / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(text)
    return latest


# ------------------------------------------------------------------------------------------------
# databases
# ------------------------------------------------------------------------------------------------
BARS_COLUMNS = (
    "symbol",
    "interval",
    "ts",
    "as_of",
    "provider",
    "status",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "policy_version",
)
"""The columns of `bars`, in table order: for benchmarks that load it (or a copy) directly."""


def bench_dsn(database: str, base_dsn: str = BASE_DSN) -> str:
    return db.dsn_with_database(base_dsn, database)


class BenchDb:
    """A database of this benchmark run only: created (and migrated) here, dropped at the end.

    On the server of DATABASE_URL, or of `base_dsn` (a server the benchmark started itself).
    """

    def __init__(self, name: str, suffix: str = "", base_dsn: str = BASE_DSN) -> None:
        self.name = f"md_bench_{name}_{PID}{suffix}".lower()
        self.dsn = bench_dsn(self.name, base_dsn)
        self._created = False

    async def create(self, *, migrate: bool = True) -> BenchDb:
        if not await db.ensure_database(self.dsn):
            # never take over a database this run did not create
            raise RuntimeError(f"database {self.name} already exists; drop it or run again")
        self._created = True
        if migrate:
            from market_data.settings import get_settings

            conn = await db.connect(self.dsn)
            try:
                await db.apply_migrations(conn, get_settings().sql_dir)
            finally:
                await conn.close()
        return self

    async def drop(self) -> None:
        if self._created:
            await db.drop_database(self.dsn)
            self._created = False

    async def connect(self) -> asyncpg.Connection:
        return await db.connect(self.dsn)


@contextlib.asynccontextmanager
async def bench_db(
    name: str, *, migrate: bool = True, suffix: str = "", base_dsn: str = BASE_DSN
) -> AsyncIterator[BenchDb]:
    d = BenchDb(name, suffix, base_dsn)
    try:
        yield await d.create(migrate=migrate)
    finally:
        await d.drop()


async def store_policy(conn: asyncpg.Connection, text: str) -> None:
    """Store `text` as the active policy (version 1) of a fresh bench database."""
    from market_data.policy import parse_policy
    from market_data.policy.loader import LoadedPolicy
    from market_data.policy.store import store_initial_policy

    loaded = LoadedPolicy(policy=parse_policy(text), version=0, source="bench", body=text)
    await store_initial_policy(conn, loaded, actor="bench")


def default_policy_text() -> str:
    return (ROOT / "include" / "policy.toml").read_text()


def edit_policy(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    """Regex substitutions on the policy TOML, each of which must match exactly once."""
    import re

    for pattern, repl in replacements:
        text, n = re.subn(pattern, repl, text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"policy edit {pattern!r} did not match")
    from market_data.policy import parse_policy

    parse_policy(text)
    return text


async def redis_cleanup(prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(BASE_REDIS)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process in its own process group, logging to a file; `stop()` ends the group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self._log.close()


def api_workers(supervisor: int) -> list[int]:
    """Process ids of the API processes `python -m api.serve` runs (uvicorn's spawned workers)."""
    import psutil

    try:
        children = psutil.Process(supervisor).children()
    except psutil.Error:
        return []
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()) and child.is_running():
                out.append(child.pid)
    return sorted(out)


def wait_http(url: str, within: float, procs: Sequence[Proc] = ()) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited during start-up:\n{p.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {within} s")


def uvicorn_args(factory: str, port: int) -> list[str]:
    """How ./dev up runs the API (`python -m api.serve`: uvicorn, one process, uvloop and
    api/http_protocol.py's httptools protocol, no access log, no deflate), serving `factory`:
    the API's or a baseline app's, so both run under the same server settings."""
    return [
        sys.executable,
        "-m",
        "api.serve",
        "--app",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def api_env(md_dsn: str, redis_prefix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": md_dsn,
        "REDIS_URL": BASE_REDIS,
        "MARKET_DATA_REDIS_PREFIX": redis_prefix,
        "MARKET_DATA_OPS_TOKEN": "bench-" + base64.urlsafe_b64encode(os.urandom(12)).decode(),
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": "0",
        "PYTHONPATH": str(ROOT),
        # one process, metrics in memory, unless `extra` asks otherwise (api_procs)
        "MD_API_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": "",
        **(extra or {}),
    }


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class RssSampler:
    """Peak RSS of the processes `select` picks among the descendants of `root_pids`, sampled
    every `every` seconds in a background thread."""

    def __init__(self, root_pids: Callable[[], list[int]], select: Callable[[Any], bool], every: float = 0.2):
        import threading

        self._roots = root_pids
        self._select = select
        self._every = every
        self._stop = threading.Event()
        self.peak_rss = 0
        self.peak_cmd = ""
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for root in self._roots():
                try:
                    children = psutil.Process(root).children(recursive=True)
                except psutil.Error:
                    continue
                for p in children:
                    try:
                        if not self._select(p):
                            continue
                        rss = p.memory_info().rss
                    except psutil.Error:
                        continue
                    if rss > self.peak_rss:
                        self.peak_rss = rss
                        with contextlib.suppress(psutil.Error):
                            self.peak_cmd = " ".join(p.cmdline())[:160]
            self.samples += 1
            self._stop.wait(self._every)


def airflow_env(md_dsn: str, af_dsn: str, home: Path, redis_prefix: str, **extra: str) -> dict[str, str]:
    """The environment of an Airflow stack on the bench's own databases (as tests/conftest.py builds
    TEST_ENV for the test run's)."""

    def conn_json(dsn: str) -> str:
        p = urlsplit(dsn)
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": p.hostname or "127.0.0.1",
                "port": p.port or 5432,
                "login": p.username or "postgres",
                "password": p.password or "",
                "schema": p.path.lstrip("/"),
            }
        )

    r = urlsplit(BASE_REDIS)
    redis_conn = json.dumps(
        {
            "conn_type": "redis",
            "host": r.hostname or "127.0.0.1",
            "port": r.port or 6379,
            "password": r.password or "",
            "extra": {"db": int((r.path or "/0").lstrip("/") or 0)},
        }
    )
    run = f"{PID}"
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": md_dsn,
        "REDIS_URL": BASE_REDIS,
        "MARKET_DATA_REDIS_PREFIX": redis_prefix,
        "MARKET_DATA_OPS_TOKEN": "bench-ops-" + run,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af_dsn.replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-jwt-" + base64.urlsafe_b64encode(os.urandom(24)).decode(),
        "AIRFLOW__API__SECRET_KEY": "bench-api-" + base64.urlsafe_b64encode(os.urandom(24)).decode(),
        "AIRFLOW__METRICS__STATSD_ON": "False",
        "AIRFLOW_CONN_MARKET_DATA_DB": conn_json(md_dsn),
        "AIRFLOW_CONN_MARKET_DATA_REDIS": redis_conn,
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": "0",
        **extra,
    }


def airflow_migrate(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError("airflow db migrate failed:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
