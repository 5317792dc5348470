"""api_procs: /stocks/{symbol}/price requests/s of the API with 2 processes vs 1 (MD_API_WORKERS), wrk.

Both APIs run as `./dev up` runs them (`python -m api.serve`, MD_API_WORKERS=1 and =2, the
second in prometheus-client's multiprocess mode) on the same data as the api benchmark
(`--api-symbols` symbols with a session of 1m bars and a quote each; a random symbol per
request). wrk (1 thread, 32 connections) measures them in alternating 2 s slices, the order
flipping every slice, for `--api-seconds` each per round, `--rounds` rounds; the ratio is the
median of the rounds' requests/s ratios. The kernel hands each of wrk's connections to one of
the two processes; the details hold the cores each process, Postgres and wrk used, which say
where the second process's gain went: on this 2-core machine the processes, Postgres and wrk
share the same two cores, and the run first measures how much more CPU work two processes get
done at once than one (a virtual machine's two vCPUs may give much less than 2x).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.benchmarks.bench_api import (
    CONNECTIONS,
    MIC,
    SLICE_SECONDS,
    WARMUP_SECONDS,
    WrkRun,
    combine,
    log_run,
    lua_script,
    measure,
    run_wrk,
    seed,
)
from tests.benchmarks.cpu import CpuMeter
from tests.benchmarks.harness import (
    PID,
    Proc,
    Row,
    api_env,
    api_workers,
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

NAME = "api_procs"
PROCESSES = {"one": 1, "two": 2}
RPS_TARGET = 1.5
PATH = "/stocks/{}/price"
APP = "api.app:create_app"


def workers_of(proc: Proc) -> list[int]:
    return api_workers(proc.pid)


@contextlib.contextmanager
def apis(dsn: str, log_dir: Path, probe: str) -> Iterator[dict[str, tuple[Proc, str]]]:
    prefix = f"md:bench:{NAME}:{PID}:"
    started: dict[str, tuple[Proc, str]] = {}
    try:
        for name, workers in PROCESSES.items():
            port = free_port()
            env = api_env(dsn, prefix, {"MD_API_WORKERS": str(workers), "PROMETHEUS_MULTIPROC_DIR": ""})
            started[name] = (
                Proc(f"api-{name}", uvicorn_args(APP, port), env, log_dir),
                f"http://127.0.0.1:{port}",
            )
        for proc, url in started.values():
            wait_http(url + probe, 90, [proc])
        for name, (proc, _) in started.items():
            if len(workers_of(proc)) != PROCESSES[name] and PROCESSES[name] > 1:
                raise RuntimeError(f"api-{name}: {len(workers_of(proc))} processes, {PROCESSES[name]} wanted")
        yield started
    finally:
        for proc, _ in started.values():
            proc.stop()


SPIN = """
import time
t, n = time.perf_counter(), 0
while time.perf_counter() - t < {seconds}:
    for _ in range(10000):
        n += 1
print(n)
"""


def parallel_scaling(seconds: float = 3.0) -> float:
    """How much more CPU work two processes get done at once than one alone (2.0: two full cores).

    The API's processes can gain no more than this however they are written: on a virtual
    machine two vCPUs may share a physical core, or the host may be busy.
    """
    import subprocess
    import sys

    def spin(n: int) -> int:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SPIN.format(seconds=seconds)], stdout=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        return sum(int(p.communicate()[0]) for p in procs)

    return spin(2) / max(1, spin(1))


def server_cores(cores: dict[str, float]) -> float:
    """Cores of the API: its one process, or the sum of its processes."""
    return cores.get("server", sum(v for k, v in cores.items() if k.startswith("process ")))


def row_from(runs: list[WrkRun], shape: str, scaling: float) -> Row:
    one = [r for r in runs if r.server == "one"]
    two = [r for r in runs if r.server == "two"]
    ratios = [b.rps / a.rps for a, b in zip(one, two, strict=True)]
    ratio = median(ratios)
    cores = {k: median([r.cores.get(k, 0.0) for r in two]) for k in sorted({k for r in two for k in r.cores})}
    cores["server"] = median([server_cores(r.cores) for r in two])
    one_rps, two_rps = median([r.rps for r in one]), median([r.rps for r in two])
    # CPU one request costs the machine (API, Postgres, wrk): what the cores allow at most
    per_request_us = 1e6 * sum(cores.get(k, 0.0) for k in ("server", "postgres", "wrk")) / max(two_rps, 1e-9)
    ceiling_rps = 1e6 * cores.get("available", 0.0) / per_request_us if per_request_us else float("nan")
    limit = None
    if ratio < RPS_TARGET:
        workers = {k: v for k, v in cores.items() if k.startswith("process ")}
        limit = (
            f"CPU: with 2 processes the API used {cores.get('server', 0):.2f} cores "
            f"({', '.join(f'{k} {v:.2f}' for k, v in workers.items())}), Postgres "
            f"{cores.get('postgres', 0):.2f}, wrk {cores.get('wrk', 0):.2f}, everything else "
            f"{cores.get('others', 0):.2f}, of {cores.get('available', 0):g}; with 1 process the API used "
            f"{median([server_cores(r.cores) for r in one]):.2f} and Postgres "
            f"{median([r.cores.get('postgres', 0.0) for r in one]):.2f}. A request costs "
            f"{per_request_us:.0f} us of CPU (API + Postgres + wrk), so {cores.get('available', 0):g} cores "
            f"serve at most {ceiling_rps:,.0f} req/s: {ceiling_rps / max(one_rps, 1e-9):.2f}x the 1-process "
            f"figure, even with nothing else running. And two CPU-bound processes get {scaling:.2f}x the "
            "work of one done on this machine (measured in the same run): that is the most any second "
            "process can add here"
        )
    return Row(
        benchmark="api processes: /price requests/s, 2 vs 1",
        figure=f"{si(two_rps)} req/s (2 processes)",
        baseline=f"{si(one_rps)} req/s (1 process)",
        ratio=ratio,
        target=f">= {RPS_TARGET}x",
        met=ratio >= RPS_TARGET,
        details={
            "shape": shape,
            "one_rps_per_round": [round(r.rps) for r in one],
            "two_rps_per_round": [round(r.rps) for r in two],
            "ratio_per_round": [round(x, 3) for x in ratios],
            "one_p50_p99_ms": [[round(r.p50_ms, 2), round(r.p99_ms, 2)] for r in one],
            "two_p50_p99_ms": [[round(r.p50_ms, 2), round(r.p99_ms, 2)] for r in two],
            "one_cores_per_round": [r.cores for r in one],
            "two_cores_per_round": [r.cores for r in two],
            "cpu_us_per_request_two": round(per_request_us, 1),
            "cpu_ceiling_rps": round(ceiling_rps),
            "machine_parallel_scaling": round(scaling, 3),
            "limit": limit,
        },
    )


async def run(args: argparse.Namespace) -> list[Row]:
    seconds, rounds, count = float(args.api_seconds), int(args.rounds), int(getattr(args, "api_symbols", 300))
    runs: list[WrkRun] = []
    scaling = parallel_scaling()
    log(f"api_procs: two CPU-bound processes do {scaling:.2f}x the work of one on this machine")
    try:
        async with bench_db(NAME) as d:
            log(f"api_procs: seeding {count} symbols")
            seeded = await seed(d.dsn, count)
            shape = (
                f"{count} {MIC} symbols, a quote each; wrk 1 thread, {CONNECTIONS} connections, "
                f"{seconds:g} s per server per round in {SLICE_SECONDS:g} s slices, {rounds} rounds"
            )
            with temp_dir("md-bench-api-procs-") as tmp:
                script = tmp / "price.lua"
                script.write_text(lua_script([PATH.format(s) for s in seeded.symbols]))
                with apis(d.dsn, tmp, PATH.format(seeded.symbols[0])) as started:
                    urls = {name: url for name, (_, url) in started.items()}

                    def meter(server: str) -> CpuMeter:
                        # each worker on its own (the meter adds every label up: no tree of them all)
                        proc = started[server][0]
                        workers = workers_of(proc)
                        processes = {f"process {i + 1}": (lambda p=pid: [p]) for i, pid in enumerate(workers)}
                        if not workers:  # one process: uvicorn serves in the process it started
                            processes = {"server": lambda: [proc.pid]}
                        return CpuMeter(processes=processes, database=d.name, waited_label="wrk")

                    log("api_procs: warming up both")
                    for server in PROCESSES:
                        run_wrk(urls[server], script, WARMUP_SECONDS, meter(server))
                    slices = max(1, round(seconds / SLICE_SECONDS))
                    for rnd in range(rounds):
                        parts: dict[str, list[WrkRun]] = {server: [] for server in PROCESSES}
                        for i in range(slices):
                            order = list(PROCESSES)
                            if (rnd + i) % 2 == 1:
                                order.reverse()
                            for server in order:
                                parts[server].append(
                                    measure(
                                        server,
                                        "price",
                                        rnd,
                                        urls[server],
                                        script,
                                        seconds / slices,
                                        meter(server),
                                        quiet=True,
                                    )
                                )
                        for server in PROCESSES:
                            runs.append(combine(parts[server]))
                            log_run(runs[-1])
    finally:
        await redis_cleanup(f"md:bench:{NAME}:{PID}:")
    return [row_from(runs, shape, scaling)]
