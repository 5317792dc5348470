"""What the Airflow benchmarks share: a real Airflow on the bench's own databases, and its figures.

`airflow_bench()` creates a market-data database (migrated, the bench policy stored as the
active version, the given universe), an Airflow metadata database (`airflow db migrate`), an
AIRFLOW_HOME and a Redis key prefix of this run only; imports the pools, serializes the DAGs,
unpauses the ones asked for and starts api-server, scheduler and dag-processor with the
LocalExecutor, or with `celery_workers=N` CeleryExecutor and N Celery workers
(`tests.e2e.airflow_stack.AirflowStack`, on a free port). Scheduled runs are
off (`[scheduler] use_job_schedule = False`): the benchmarks trigger every run themselves, with
the data interval they choose, so nothing the timetables would start at the wall clock's
time interferes. At the end every process is stopped (process groups) and both databases,
the folder and the Redis keys are removed, also on errors and Ctrl-C.

The figures come from Airflow itself: a DAG run's start_date/end_date, its task instances'
scheduled/queued/start/end times (REST API v2), and their XCom return values.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from market_data.airflow.executor import worker_concurrency
from market_data.universe import UniverseEntry, upsert_universe
from tests.benchmarks.harness import (
    PID,
    ROOT,
    BenchDb,
    RssSampler,
    airflow_env,
    airflow_migrate,
    log,
    redis_cleanup,
    store_policy,
    temp_dir,
)
from tests.e2e.airflow_stack import AirflowStack

TERMINAL = {"success", "failed"}
TASK_TITLE = re.compile(r"^airflow worker -- [0-9a-f]{8}-[0-9a-f]{4}-")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def seconds_between(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 3) if a is not None and b is not None else None


# ------------------------------------------------------------------------------------------------
# a statsd receiver: the task processes' call log
# ------------------------------------------------------------------------------------------------
@dataclass
class StatsdPacket:
    at: float
    """time.time() when the packet arrived."""
    name: str
    value: str


class StatsdLog:
    """A UDP statsd receiver in a background thread: every metric the task processes send
    (`provider_latency_ms.<provider>.<endpoint>` once per provider call, errors, ...)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.packets: list[StatsdPacket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time()
            for line in data.decode(errors="replace").splitlines():
                name, _, value = line.partition(":")
                with self._lock:
                    self.packets.append(StatsdPacket(now, name, value))

    def matching(self, prefix: str, since: float = 0.0) -> list[StatsdPacket]:
        with self._lock:
            return [p for p in self.packets if p.name.startswith(prefix) and p.at >= since]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# ------------------------------------------------------------------------------------------------
# CPU accounting
# ------------------------------------------------------------------------------------------------
def process_kind(title: str) -> str:
    """What a process of the stack is, from its title."""
    title = title.strip()
    if TASK_TITLE.match(title):
        return "task processes"
    if title.startswith("airflow worker -- LocalExecutor") or title.startswith("airflow executor"):
        return "executor workers (task supervisors)"
    # a Celery worker, its pool processes (titled `airflow supervisor: <ti>` while they supervise
    # a task), its log server
    if "celery" in title or title.startswith("airflow supervisor:"):
        return "celery workers (pool: task supervisors)"
    if title.startswith("postgres:"):
        return "postgres backends"
    for name, marks in (
        ("api-server", ("api_server", "api-server")),
        ("scheduler", ("scheduler", "serve-logs")),  # serve-logs: the scheduler's log server
        ("dag-processor", ("dag-processor", "dag_processor")),
    ):
        if any(m in title for m in marks):
            return name
    return "other: " + title[:60]


class CpuSampler:
    """CPU seconds used, per kind of process, by the stack while the block runs.

    Every `every` seconds it reads the CPU times (user + system) of the descendants of
    `root_pids` (the Airflow components and what they fork) and of the Postgres backends
    whose title names one of `databases`. A process's figure is its last reading minus what it
    had at the start (0 for processes started later), so the CPU a process spends after its
    last reading (at most `every` s before it exits) is missed: the totals are a lower bound.
    It also reads /proc/stat, for how busy the whole machine (other users included) was.
    """

    def __init__(self, root_pids: Callable[[], list[int]], databases: Sequence[str], every: float = 0.25):
        self._roots = root_pids
        self._dbs = tuple(databases)
        self._every = every
        self._stop = threading.Event()
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.seconds = 0.0
        self.machine_busy_cores = 0.0

    @staticmethod
    def _proc_stat() -> tuple[float, float]:
        with open("/proc/stat") as fh:
            parts = [float(x) for x in fh.readline().split()[1:]]
        idle = parts[3] + parts[4]
        return sum(parts) - idle, sum(parts)

    def _read(self, initial: bool) -> None:
        import psutil

        procs: dict[int, Any] = {}
        for root in self._roots():
            try:
                rp = psutil.Process(root)
                procs[root] = rp
                procs.update({c.pid: c for c in rp.children(recursive=True)})
            except psutil.Error:
                continue
        for p in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(p.info["cmdline"] or [])
            if p.info["name"] == "postgres" and any(f" {d} " in title for d in self._dbs):
                procs.setdefault(p.pid, p)  # a backend of one of our databases
        for pid, p in procs.items():
            try:
                title = " ".join(p.cmdline())
                t = p.cpu_times()
            except psutil.Error:
                continue
            used = float(t.user + t.system)
            if initial:
                self._first[pid] = used
            known = self._last.get(pid)
            # an exiting process shows no title: keep what it was (a forked task takes its own
            # title a moment after the fork: the latest one it showed wins)
            kind = process_kind(title) if title else (known[0] if known else "other (exited)")
            self._last[pid] = (kind, used)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read(False)
            self._stop.wait(self._every)

    def __enter__(self) -> CpuSampler:
        self._read(True)
        self._t0 = time.monotonic()
        self._stat0 = self._proc_stat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._read(False)
        busy0, total0 = self._stat0
        busy1, total1 = self._proc_stat()
        cores = os.cpu_count() or 1
        self.machine_busy_cores = (busy1 - busy0) / (total1 - total0) * cores if total1 > total0 else 0.0
        self.wall = time.monotonic() - self._t0

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (kind, used) in self._last.items():
            out[kind] = out.get(kind, 0.0) + used - self._first.get(pid, 0.0)
        return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def summary(self) -> dict[str, Any]:
        kinds = self.by_kind()
        total = sum(kinds.values())
        cores = os.cpu_count() or 1
        return {
            "cpu_s_by_process_kind": kinds,
            "cpu_s_total": round(total, 2),
            "cpu_floor_s": round(total / cores, 2),
            "cpu_floor_what": f"the stack's CPU seconds / {cores} cores: no schedule can end the run sooner",
            "machine_busy_cores": round(self.machine_busy_cores, 2),
            "machine_busy_what": "average cores busy on the whole machine during the run (other users too)",
            "sampled_wall_s": round(self.wall, 2),
        }


# ------------------------------------------------------------------------------------------------
# the stack
# ------------------------------------------------------------------------------------------------
@dataclass
class BenchAirflow:
    """A running Airflow on the bench's databases (see the module docstring)."""

    md: BenchDb
    stack: AirflowStack
    redis_prefix: str
    statsd: StatsdLog | None = None
    executor_pids: list[int] = field(default_factory=list)
    """The processes that task processes descend from: the scheduler (LocalExecutor) or the
    Celery workers."""

    # -- REST ------------------------------------------------------------------------------
    def trigger(
        self,
        dag_id: str,
        run_id: str,
        *,
        interval: tuple[datetime, datetime] | None = None,
        conf: dict[str, Any] | None = None,
    ) -> str:
        """Trigger a manual run; with `interval`, its logical date is the interval's end."""
        body: dict[str, Any] = {"dag_run_id": run_id, "conf": conf or {}}
        if interval is None:
            body["logical_date"] = None
        else:
            body.update(
                logical_date=interval[1].isoformat(),
                data_interval_start=interval[0].isoformat(),
                data_interval_end=interval[1].isoformat(),
            )
        return str(self.stack.api("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 1.0) -> dict[str, Any]:
        """Poll until the run ends; returns its JSON (raises TimeoutError with the scheduler's tail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in TERMINAL:
                return run
            for name, proc in self.stack.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited during the run:\n{self.stack.tail(name)}")
            time.sleep(poll)
        raise TimeoutError(f"{dag_id} {run_id} not done after {timeout} s\n{self.stack.tail('scheduler')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.stack.api(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(out)}"
            )
            out.extend(page["task_instances"])
            if len(out) >= page["total_entries"] or not page["task_instances"]:
                return out

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.stack.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true",
        )
        return entry.get("value")

    # -- processes -------------------------------------------------------------------------
    def task_rss(self) -> RssSampler:
        """Peak RSS of the task processes, forked under the scheduler's executor workers (or the
        Celery workers' pool processes): their title is `airflow worker -- <task instance uuid>`
        (LocalExecutor's workers that supervise them are `airflow worker -- LocalExecutor: ...`)."""

        def is_task(p: Any) -> bool:
            return TASK_TITLE.match(" ".join(p.cmdline())) is not None

        return RssSampler(lambda: self.executor_pids, is_task, every=0.25)

    def cpu(self) -> CpuSampler:
        """CPU seconds of the stack's processes (and its Postgres backends) during the block."""
        return CpuSampler(
            lambda: [p.pid for p in self.stack.procs.values()], [self.md.name, self.md.name + "_airflow"]
        )


def run_sql(d: BenchDb, fn: Callable[[Any], Any]) -> Any:
    """Run `await fn(conn)` on a fresh connection to the bench database (for sync callers)."""

    async def go() -> Any:
        conn = await d.connect()
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


@contextlib.contextmanager
def airflow_bench(
    name: str,
    policy_text: str,
    universe: Sequence[UniverseEntry],
    *,
    unpause: Sequence[str],
    parallelism: int = 16,
    statsd: bool = False,
    extra_env: dict[str, str] | None = None,
    pools: Sequence[tuple[str, int]] = (),
    celery_workers: int = 0,
) -> Iterator[BenchAirflow]:
    """Databases, AIRFLOW_HOME, Redis prefix and a running Airflow for one benchmark (see above)."""
    md = BenchDb(name)
    af = BenchDb(name, suffix="_airflow")
    redis_prefix = f"mdbench:{name}:{PID}:"
    stack: AirflowStack | None = None
    receiver: StatsdLog | None = None
    with temp_dir(f"md_bench_{name}_") as home:
        try:
            asyncio.run(md.create())
            asyncio.run(af.create(migrate=False))

            async def seed(conn: Any) -> None:
                await store_policy(conn, policy_text)
                await upsert_universe(conn, list(universe))

            run_sql(md, seed)
            policy_file = Path(home) / "policy.toml"
            policy_file.write_text(policy_text)
            if statsd:
                receiver = StatsdLog()
            env = airflow_env(
                md.dsn,
                af.dsn,
                home,
                redis_prefix,
                MARKET_DATA_POLICY_FILE=str(policy_file),
                AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
                AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="600",
                **({"STATSD_PORT": str(receiver.port)} if receiver else {}),
                **(extra_env or {}),
            )
            log(f"{name}: airflow db migrate ({af.name})")
            airflow_migrate(env)
            # Celery workers share the parallelism as ./dev up --celery-workers N shares it
            stack = AirflowStack(
                env,
                home,
                celery_workers=celery_workers,
                worker_concurrency=worker_concurrency(parallelism, celery_workers),
            )
            # ./dev up's parallelism (the e2e stack's 8 is for tests), unless the bench says otherwise
            stack.env["AIRFLOW__CORE__PARALLELISM"] = str(parallelism)
            steps: list[tuple[str, ...]] = [
                ("pools", "import", str(ROOT / "include" / "pools.json")),
                *(("pools", "set", pool, str(slots), "bench") for pool, slots in pools),
                ("dags", "reserialize"),
                *(("dags", "unpause", dag_id) for dag_id in unpause),
            ]
            for args in steps:
                out = stack.cli(*args)
                if out.returncode != 0:
                    raise RuntimeError(
                        f"airflow {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
                    )
            workers = f", {celery_workers} Celery workers" if celery_workers else ""
            log(f"{name}: starting api-server, scheduler, dag-processor{workers} (port {stack.port})")
            stack.start()
            bench = BenchAirflow(md=md, stack=stack, redis_prefix=redis_prefix, statsd=receiver)
            bench.executor_pids = [stack.procs[p].pid for p in ("scheduler", *stack.workers)]
            yield bench
        finally:
            if stack is not None:
                stack.stop()  # the components' process groups, then what is left in their sessions
            if receiver is not None:
                receiver.close()
            asyncio.run(_drop_all(md, af, redis_prefix))


async def _drop_all(md: BenchDb, af: BenchDb, redis_prefix: str) -> None:
    for d in (md, af):
        # the server is shared: when it has no connection slot to spare, wait for one
        for attempt in range(30):
            try:
                await d.drop()
                break
            except Exception as exc:  # report and go on: the other one must still go
                if attempt == 29:
                    log(f"could not drop {d.name}: {exc!r}; drop it by hand")
                else:
                    await asyncio.sleep(2)
    with contextlib.suppress(Exception):
        await redis_cleanup(redis_prefix)


# ------------------------------------------------------------------------------------------------
# where a run's time went
# ------------------------------------------------------------------------------------------------
def stage_breakdown(run: dict[str, Any], tis: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-stage figures of one DAG run from its task instances' own timestamps.

    Returns the run's wall time, each task's duration (mapped tasks: count, min, median, max,
    sum), and the gaps in which no task of the run was running: before the first task started,
    between stages (the scheduler noticing a task ended, creating the next ones, the executor
    starting their processes), and after the last one ended. `queue_wait` per task is start -
    scheduled (what waiting for a free executor slot and the process start-up cost).
    """
    start, end = parse_ts(run.get("start_date")), parse_ts(run.get("end_date"))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for ti in tis:
        by_task.setdefault(ti["task_id"], []).append(ti)
    stages: dict[str, Any] = {}
    spans: list[tuple[datetime, datetime]] = []
    for task_id, group in by_task.items():
        durations = sorted(float(t["duration"]) for t in group if t.get("duration") is not None)
        waits = sorted(
            w
            for t in group
            if (w := seconds_between(parse_ts(t.get("scheduled_when")), parse_ts(t.get("start_date"))))
            is not None
        )
        starts = [s for t in group if (s := parse_ts(t.get("start_date")))]
        ends = [e for t in group if (e := parse_ts(t.get("end_date")))]
        spans.extend(zip(starts, ends, strict=False))
        entry: dict[str, Any] = {
            "instances": len(group),
            "states": sorted({str(t["state"]) for t in group}),
            "first_start_s": seconds_between(start, min(starts)) if starts else None,
            "last_end_s": seconds_between(start, max(ends)) if ends else None,
        }
        if durations:
            entry["duration_s"] = (
                round(durations[0], 3)
                if len(durations) == 1
                else {
                    "min": round(durations[0], 3),
                    "median": round(durations[len(durations) // 2], 3),
                    "max": round(durations[-1], 3),
                    "sum": round(sum(durations), 3),
                }
            )
        if waits:
            entry["queue_wait_s"] = {"median": waits[len(waits) // 2], "max": waits[-1]}
        stages[task_id] = entry
    idle: list[dict[str, Any]] = []
    if start is not None and spans:
        spans.sort()
        cursor = start
        for s, e in spans:
            if s > cursor:
                idle.append({"from_s": seconds_between(start, cursor), "seconds": seconds_between(cursor, s)})
            cursor = max(cursor, e)
        if end is not None and end > cursor:
            idle.append({"from_s": seconds_between(start, cursor), "seconds": seconds_between(cursor, end)})
    return {
        "wall_s": seconds_between(start, end),
        "queued_to_start_s": seconds_between(parse_ts(run.get("queued_at")), start),
        "stages": stages,
        "no_task_running": idle,
        "no_task_running_total_s": round(sum(float(i["seconds"] or 0) for i in idle), 3),
    }
