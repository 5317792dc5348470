"""`./dev bench [NAME...]`: run the benchmarks, print one table, write bench-results/*.json.

    python -m tests.benchmarks.run                 # every benchmark (about 40 minutes: storage grows
                                                   # a table to 100M bars)
    python -m tests.benchmarks.run ingest gaps     # some of them
    python -m tests.benchmarks.run --list

Each benchmark creates its own database (md_bench_<name>_<pid>), measures, and drops it;
figures are noisy on a shared machine, so every target is a ratio against a baseline
measured in the same run (or an absolute bound), with the absolute figures beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import signal
import sys
import time
import traceback
from types import FrameType

from tests.benchmarks.harness import Row, log, machine_info, machine_line, render_table, write_results

BENCHMARKS = {
    "ingest": "tests.benchmarks.bench_ingest",
    "gaps": "tests.benchmarks.bench_gaps",
    "sweep": "tests.benchmarks.bench_sweep",
    "sweep-celery": "tests.benchmarks.bench_sweep_celery",
    "api": "tests.benchmarks.bench_api",
    "ws": "tests.benchmarks.bench_ws",
    "backfill": "tests.benchmarks.bench_backfill",
    "timeframes": "tests.benchmarks.bench_timeframes",
    "adjust": "tests.benchmarks.bench_adjust",
    "exports": "tests.benchmarks.bench_exports",
    "api_procs": "tests.benchmarks.bench_api_procs",
    "storage": "tests.benchmarks.bench_storage",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="./dev bench", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--rounds", type=int, default=2, help="repetitions of alternated measurements (2)")
    p.add_argument("--ingest-symbols", type=int, default=10_000)
    p.add_argument("--ingest-minutes", type=int, default=100)
    p.add_argument("--gaps-symbols", type=int, default=10_000)
    p.add_argument("--sweep-symbols", type=int, default=10_000)
    p.add_argument(
        "--sweep-runs",
        type=int,
        default=3,
        help="sweep runs to measure: 1 cold + steady ones (3; sweep-celery: per executor)",
    )
    p.add_argument(
        "--sweep-parallelism",
        type=int,
        default=16,
        help="Airflow [core] parallelism of the sweep (16, as ./dev up)",
    )
    p.add_argument(
        "--sweep-batch-size",
        type=int,
        default=None,
        help="override T0's batch_size (default: the policy's 250)",
    )
    p.add_argument("--api-seconds", type=float, default=8.0, help="length of each wrk run (8 s)")
    p.add_argument(
        "--api-symbols", type=int, default=300, help="symbols the api benchmark spreads over (300)"
    )
    p.add_argument("--ws-clients", type=int, default=1000)
    p.add_argument("--ws-seconds", type=float, default=8.0, help="length of each ws phase (8 s)")
    p.add_argument("--ws-procs", type=int, default=2, help="processes the ws clients are spread over (2)")
    p.add_argument("--ws-rounds", type=int, default=3, help="ws rounds (reading, then one stalled) (3)")
    p.add_argument("--backfill-symbols", type=int, default=100)
    p.add_argument(
        "--backfill-rate",
        type=int,
        default=60,
        help="synthetic calls/min in the backfill bench (60: Finnhub free)",
    )
    p.add_argument("--backfill-max-runs", type=int, default=5, help="md_backfill runs at most to drain (5)")
    p.add_argument(
        "--adjust-iterations",
        type=int,
        default=10,
        help="reads of each kind (raw, adjusted) per round in the adjust bench (10)",
    )
    p.add_argument(
        "--timeframes-iterations",
        type=int,
        default=15,
        help="reads of each kind (built 1h/1d, baseline 1h/1d) per round in the timeframes bench (15)",
    )
    p.add_argument(
        "--exports-symbols",
        type=int,
        default=40,
        help="symbols of 93 days of 1m bars each (40: about 1M bars)",
    )
    p.add_argument(
        "--exports-iterations",
        type=int,
        default=3,
        help="exports and COPYs per round in the exports bench (3)",
    )
    p.add_argument(
        "--storage-sizes",
        default="1M,10M,100M",
        help="sizes `bars` is grown to, smallest first (1M,10M,100M; the largest only if the disk has room)",
    )
    p.add_argument(
        "--storage-symbols", type=int, default=500, help="symbols the stored bars spread over (500)"
    )
    p.add_argument("--storage-reads", type=int, default=2000, help="one-day reads timed at each size (2000)")
    p.add_argument(
        "--storage-postgres",
        choices=["own", "shared"],
        default="own",
        help="own: a Postgres the storage bench starts in /var/tmp with README's recommended memory "
        "(shared_buffers a quarter of RAM); shared: DATABASE_URL's server as configured (own)",
    )
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: databases dropped, processes stopped


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            print(f"{name:10s} {doc}")
        return 0
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    machine = machine_info()
    print(f"machine: {machine_line(machine)}", file=sys.stderr)
    started = time.monotonic()
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        t = time.monotonic()
        log(f"== {name}")
        try:
            result = module.run(args)
            rows.extend(asyncio.run(result) if inspect.iscoroutine(result) else result)
        except KeyboardInterrupt:
            log(f"{name}: interrupted")
            failed.append(name)
            break
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            rows.append(
                Row(
                    benchmark=name,
                    figure="error",
                    baseline="",
                    ratio=None,
                    target="",
                    met=False,
                    details={"error": repr(exc)},
                )
            )
        log(f"== {name} done in {time.monotonic() - t:.0f} s")
    wall = time.monotonic() - started
    path = write_results(rows, machine, wall, names)
    print()
    print(render_table(rows))
    print()
    print(f"Machine: {machine_line(machine)}")
    print(f"Wall time: {wall / 60:.1f} min. Results: {path}")
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0 if all(r.met is not False for r in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
