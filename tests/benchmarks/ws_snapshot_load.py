"""Load for `bench_api`'s WebSocket snapshot rows: subscribe -> snapshot round trips on N sockets.

    python -m tests.benchmarks.ws_snapshot_load URL --symbols A,B,... --connections 32 --seconds 4

Each connection loops: subscribe to a random symbol's 1m bars and quotes, read `subscribed`
and `snapshot` (the measured round trip: from sending the subscribe to receiving the
snapshot), unsubscribe, read `unsubscribed`. Prints one line `WS_JSON {...}` in the shape of
bench_api's wrk summary (requests, duration_us, latency percentiles in microseconds, errors),
so the same code turns either into a row. Runs in its own process (uvloop), like wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import numpy as np
import websockets


async def _connection(
    url: str, symbols: list[str], until: float, seed: int, out: list[float], errors: dict[str, int]
) -> None:
    rng = random.Random(seed)
    try:
        async with websockets.connect(url, compression=None, ping_interval=None, max_size=2**22) as ws:
            n = 0
            while time.monotonic() < until:
                symbol = rng.choice(symbols)
                n += 1
                started = time.perf_counter()
                await ws.send(
                    json.dumps({"action": "subscribe", "bars": [symbol], "quotes": [symbol], "id": n})
                )
                got_snapshot = False
                while not got_snapshot:
                    message = json.loads(await ws.recv())
                    kind = message.get("type")
                    if kind == "snapshot":
                        got_snapshot = True
                        if not message["bars"] or not message["quotes"]:
                            errors["status"] += 1
                    elif kind == "error":
                        errors["status"] += 1
                        return
                out.append(time.perf_counter() - started)
                await ws.send(
                    json.dumps({"action": "unsubscribe", "bars": [symbol], "quotes": [symbol], "id": -n})
                )
                while json.loads(await ws.recv()).get("type") != "unsubscribed":
                    pass
    except (OSError, websockets.WebSocketException):
        errors["connect"] += 1


async def run(url: str, symbols: list[str], connections: int, seconds: float, seed: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(
        *(_connection(url, symbols, until, seed + i, latencies, errors) for i in range(connections))
    )
    duration = time.monotonic() - started
    us = np.array(latencies) * 1e6 if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "bytes": 0,
        "p50_us": int(np.percentile(us, 50)),
        "p90_us": int(np.percentile(us, 90)),
        "p99_us": int(np.percentile(us, 99)),
        "p999_us": int(np.percentile(us, 99.9)),
        "max_us": int(us.max()),
        "mean_us": float(us.mean()),
        **errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--symbols", required=True, help="comma-separated tickers to pick from")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    summary = asyncio.run(run(args.url, args.symbols.split(","), args.connections, args.seconds, args.seed))
    print("WS_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
