"""./dev soak [--minutes N]: the whole stack for N minutes under load and scheduled faults, then checked.

    ./dev soak --minutes 60        (the 5-minute version runs in ./dev test: tests/soak/test_soak.py)

1. Starts its own stack (`tests/soak/stack.py`: `./dev up --restart` on free ports, databases
   `market_data_soak_<pid>[_airflow]`, a temporary AIRFLOW_HOME, a redis-server of its own).
   The 24/7 crypto pairs keep it live at any hour; equities too while their markets trade.
2. Loads it for N minutes (`tests/soak/load.py`): WebSocket clients subscribed to everything,
   HTTP readers on every read endpoint (built intervals and CSV included), a manual backfill
   every few minutes, policy reloads (the provider faults are reloads).
3. Injects faults on a schedule (`tests/soak/faults.py`): synthetic outage, 429 storm,
   revisions, dropped bars; SIGKILL of the scheduler, a task process, the dag-processor and an
   API process; every backend of its databases terminated (the Postgres restart equivalent
   on a shared server); its Redis stopped for 60 s.
4. Drains (the default policy back, until every expected bar of the window is stored or
   confirmed empty and no backfill job is left, at most --drain-minutes) and prints one table
   (`tests/soak/checks.py`); exit 0 when every row is ok.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import timedelta

import asyncpg

from tests.soak import checks
from tests.soak.faults import Fault, Injector, runner, schedule, watch_heal
from tests.soak.load import HttpReader, Ops, Reference, WsClient
from tests.soak.stack import SoakStack, StatsdTap


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def soak(args: argparse.Namespace) -> int:
    minutes = float(args.minutes)
    warmup = (
        float(args.warmup_minutes if args.warmup_minutes is not None else min(5.0, max(1.0, minutes / 6)))
        * 60
    )
    stack = SoakStack(str(os.getpid()), api_workers=args.api_workers, keep=args.keep)
    tap = StatsdTap()
    tap.watch("synthetic")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: tap, local_addr=("127.0.0.1", stack.statsd_port)
    )
    rows: list[checks.Row] = []
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop the stack and drop its databases first
        loop.add_signal_handler(sig, main.cancel)
    sessions: set[int] = set()
    try:
        log(
            f"starting the stack in {stack.dir} (API :{stack.api_port}, Airflow :{stack.airflow_port}, "
            f"Redis :{stack.redis.port}, database {stack.db_name})"
        )
        started = time.time()
        await asyncio.to_thread(stack.start)
        log(f"up in {time.time() - started:.0f} s")
        conn = await asyncpg.connect(stack.dsn)
        try:
            live = [
                r["symbol"]
                for r in await conn.fetch(
                    "SELECT symbol FROM symbol_universe WHERE active AND exchange_mic = 'C247' "
                    "ORDER BY symbol"
                )
            ]
            t0_symbols = [
                r["symbol"]
                for r in await conn.fetch(
                    "SELECT symbol FROM symbol_universe WHERE active AND tier = 'T0' ORDER BY symbol"
                )
            ]
        finally:
            await conn.close()
        ops = Ops(stack.api, stack.ops_token, live)
        base_policy = await ops.policy()
        calls_per_minute = 6000
        for line in base_policy.split("[providers.synthetic]", 1)[1].splitlines()[:12]:
            if line.startswith("calls_per_minute"):
                calls_per_minute = int(line.split("=")[1])

        stop = asyncio.Event()
        ref = Reference(stack.dsn)
        clients = [
            WsClient(stack.api.replace("http://", "ws://") + "/ws", f"ws{i}") for i in range(args.ws_clients)
        ]
        read_symbols = [*live, "AAPL", "MSFT", "SPY"]
        readers = [HttpReader(stack.api, read_symbols, seed=i) for i in range(args.readers)]
        samples: list[checks.RssSample] = []
        tasks = [
            asyncio.create_task(ref.run(stop)),
            *(asyncio.create_task(c.run(stop)) for c in clients),
            *(asyncio.create_task(r.run(stop)) for r in readers),
            asyncio.create_task(ops.run(stop, every=max(60.0, minutes * 60 / 12), base_policy=base_policy)),
            asyncio.create_task(checks.sample_rss(stack, samples, stop)),
        ]
        load_start = time.time()
        window_start = checks.utc(load_start).replace(second=0, microsecond=0) + timedelta(minutes=1)
        injector = Injector(stack, ops, base_policy)
        faults = [Fault(name, at) for name, at in schedule(minutes, warmup)]
        log(
            f"load for {minutes:g} min (warm-up {warmup:.0f} s); faults at "
            + ", ".join(f"{f.name} +{f.at:.0f}s" for f in faults)
        )
        healers: list[asyncio.Task[None]] = []
        running: list[asyncio.Task[None]] = []

        async def inject(f: Fault) -> None:
            await asyncio.sleep(max(0.0, load_start + f.at - time.time()))
            f.started = time.time()
            log(f"fault: {f.name}")
            try:
                await runner(injector, f.name)(f)
            except Exception as exc:  # a fault that cannot be injected is a row, not a crash
                f.detail = f"could not inject: {type(exc).__name__}: {exc}"
            f.ended = time.time()
            log(f"fault: {f.name} ended ({f.detail})")
            healers.append(asyncio.create_task(watch_heal(stack, f)))

        running = [asyncio.create_task(inject(f)) for f in faults]
        await asyncio.sleep(max(0.0, load_start + minutes * 60 - time.time()))
        await asyncio.gather(*running)  # a fault still running (Redis down) ends first
        load_end = time.time()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        window_end = checks.utc(load_end).replace(second=0, microsecond=0)
        log(
            f"load ended; draining (at most {args.drain_minutes:g} min): "
            f"window {window_start:%H:%M}-{window_end:%H:%M} UTC"
        )
        await ops.reload(base_policy)
        missing, jobs, drained = await checks.drain(
            stack, t0_symbols, window_start, window_end, args.drain_minutes * 60
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*healers), 120)
        log(f"drained in {drained:.0f} s; checking")

        rows.append(await asyncio.to_thread(checks.integrity, stack))
        lost = {s: n for s, n in missing.items() if n}
        rows.append(
            checks.Row(
                "0 missing expected bars (per symbol, 1m window)",
                not lost and jobs == 0,
                f"{sum(max(0, n) for n in missing.values())} missing over {len(missing)} symbols",
                f"{lost or 'none'}; {jobs} backfill jobs left; "
                f"window {window_start:%H:%M}-{window_end:%H:%M} UTC",
            )
        )
        rows.append(await checks.revisions(stack, clients, window_start))
        rows.append(checks.ws_delivery(clients, ref, load_end))
        rows.append(checks.http_errors(readers, ops, faults))
        rows.append(checks.rss_growth(samples, load_start + warmup))
        rows.append(checks.provider_limits(tap, {"synthetic": calls_per_minute}))
        rows.extend(checks.heal_times(faults))
    finally:
        transport.close()
        log("stopping the stack")
        sessions = stack.sessions()
        stopped_at = time.time()
        await asyncio.to_thread(stack.stop)
        if rows:
            rows.append(checks.leftovers(sessions, stopped_at))
        if not args.keep:
            await stack.drop_databases()
        else:
            log(f"kept: {stack.dir}, databases {stack.db_name}[_airflow]")
    print()
    print(
        f"soak: {minutes:g} minutes, {args.ws_clients} WebSocket clients, {args.readers} HTTP readers, "
        f"{args.api_workers} API processes"
    )
    print(checks.table(rows))
    ok = all(r.ok for r in rows)
    print(f"\nsoak {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="./dev soak", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="length of the loaded window with faults (60)")
    p.add_argument(
        "--warmup-minutes", type=float, default=None, help="before the first fault (min(5, minutes/6))"
    )
    p.add_argument("--drain-minutes", type=float, default=15.0, help="at most this long for the drain (15)")
    p.add_argument("--ws-clients", type=int, default=4, help="WebSocket clients subscribed to everything (4)")
    p.add_argument("--readers", type=int, default=2, help="HTTP readers looping over the read endpoints (2)")
    p.add_argument("--api-workers", type=int, default=2, help="API processes (MD_API_WORKERS, 2)")
    p.add_argument("--keep", action="store_true", help="keep the databases and the logs folder")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(soak(parser().parse_args(argv)))
    except asyncio.CancelledError:  # SIGINT / SIGTERM: the stack was stopped on the way out
        print("soak interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
