"""CPU per request of the ASGI apps alone: framework and handler, with canned query results.

    python -m tests.benchmarks.asgi_overhead [--requests 5000] [--repeats 5]    (prints JSON)

bench_api runs this in a process of its own. Each app is called in-process (no server, no
socket, no database: `api.stocks.queries` returns fixed rows of the same shape as asyncpg's)
for /stocks/{symbol}/price and /history over 300 symbols (the policy and the symbols' stored
intervals, which the API keeps in memory, canned too), and the CPU time per request is the
minimum over `--repeats` batches (the least disturbed by other work on the machine). Three
apps: the real API (`api.app.create_app`), the Starlette baseline (`baseline_app`), and a
bare Litestar app (two handlers over the same `Floor`, no middleware, no dependencies): the
framework's own floor. What the API costs beyond the baseline here is a fixed cost per
request that no database or server tuning takes away, which bounds the requests/s ratio:
at most baseline_cpu / (baseline_cpu + difference).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from litestar import Litestar, Response, get

from api.stocks import queries, symbols
from market_data import bar_fetch, calendar
from market_data.aggregate import READ_AS_STORED, Bars
from market_data.policy import load_policy_file
from market_data.records import Interval
from market_data.settings import get_settings
from tests.benchmarks.baseline_app import encode

ASGIApp = Callable[..., Awaitable[None]]
"""An ASGI app: (scope, receive, send)."""
SESSION_CLOSE = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
AS_OF = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
BARS = Bars(
    ts=np.array([calendar.to_ns(SESSION_CLOSE - timedelta(minutes=390 - i)) for i in range(390)], np.int64),
    open=100.0 + np.arange(390.0),
    high=100.5 + np.arange(390.0),
    low=99.5 + np.arange(390.0),
    close=100.2 + np.arange(390.0),
    volume=1000.0 + np.arange(390.0),
    vwap=np.full(390, 100.1),
    trade_count=np.full(390, 20.0),
    provider=np.full(390, "synthetic", dtype=object),
    as_of=np.full(390, calendar.to_ns(AS_OF), np.int64),
    complete=np.ones(390, bool),
    base_bars=np.full(390, READ_AS_STORED, np.int64),
)


async def _latest_quote(
    conn: Any, symbol: str, as_of: Any = None
) -> Any:  # Records are read by key, as dicts are
    return {"ts": SESSION_CLOSE, "last": 101.5, "bid": 101.4, "ask": 101.6, "provider": "synthetic"}


async def _latest_bars(conn: Any, symbol: str, as_of: Any = None) -> list[Any]:
    return [
        {
            "interval": "1m",
            "ts": SESSION_CLOSE - timedelta(minutes=1),
            "close": 101.2,
            "provider": "synthetic",
        }
    ]


async def _exchanges_of(conn: Any, symbols: list[str]) -> list[Any]:
    return [{"symbol": s, "exchange_mic": "XNAS", "tier": "T0", "security_id": None} for s in symbols]


async def _ticker_holders(conn: Any, tickers: list[str]) -> dict[str, list[Any]]:
    return {}


async def _held_intervals(conn: Any, symbols: list[str]) -> dict[str, set[Interval]]:
    return {s: {Interval.M1} for s in symbols}


async def _stored_page(
    conn: Any,
    symbol: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    as_of: datetime,
    limit: int,
    *,
    newest_first: bool,
) -> Bars:
    return BARS.reversed() if newest_first else BARS


def can_queries() -> None:
    """Replace the query functions both apps call with fixed results (this process only).

    On purpose: this measures the frameworks and handlers alone, so the database is taken out
    of the request; `python -m tests.benchmarks.asgi_overhead` runs in a process of its own,
    which nothing else shares.
    """
    queries.latest_quote = _latest_quote
    queries.latest_bars = _latest_bars
    queries.exchanges_of = _exchanges_of
    symbols.held_intervals = _held_intervals  # type: ignore[assignment]
    symbols.ticker_holders = _ticker_holders  # type: ignore[assignment]
    bar_fetch.stored_page = _stored_page  # type: ignore[assignment]


class _NoPool:
    """Stands in for the asyncpg pool: the canned queries never touch it."""

    async def close(self) -> None:
        return None


def bare_litestar(floor: Any) -> Litestar:
    """Litestar with nothing but two routes over the baseline's `Floor`."""

    @get("/stocks/{symbol:str}/price")
    async def price(symbol: str) -> Response[bytes]:
        status, body = await floor.price(symbol)
        return Response(encode(body), status_code=status, media_type="application/json")

    @get("/stocks/{symbol:str}/history")
    async def history(symbol: str) -> Response[bytes]:
        status, body = await floor.history(symbol)
        return Response(encode(body), status_code=status, media_type="application/json")

    return Litestar(route_handlers=[price, history], openapi_config=None)


def build_apps() -> dict[str, ASGIApp]:
    from api.app import create_app
    from tests.benchmarks import baseline_app

    api = create_app()
    api.state.resources.pool = _NoPool()
    policy = load_policy_file(get_settings().policy_file)

    async def active_policy(db: Any) -> Any:
        return policy

    api.state.resources.policy.get = active_policy
    pool: Any = _NoPool()
    return {
        "api": api,
        "baseline": baseline_app.create_app(pool=pool),
        "bare_litestar": bare_litestar(baseline_app.Floor(pool)),
    }


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "extensions": {},
    }


async def cpu_per_request(app: ASGIApp, paths: list[str], requests: int) -> float:
    """CPU microseconds per request over `requests` calls (after a warm-up); checks every 200."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for i in range(200):
        await app(_scope(paths[i % len(paths)]), receive, send)
    if set(statuses) != {200}:
        raise RuntimeError(f"the app answered {sorted(set(statuses))}, not 200")
    gc.collect()
    scopes = [_scope(paths[i % len(paths)]) for i in range(requests)]
    t = time.process_time()
    for scope in scopes:
        await app(scope, receive, send)
    return (time.process_time() - t) / requests * 1e6


async def measure(requests: int, repeats: int) -> dict[str, dict[str, float]]:
    can_queries()
    apps = build_apps()
    symbols = [f"BAPI{i:04d}" for i in range(300)]
    out: dict[str, dict[str, float]] = {}
    for endpoint in ("price", "history"):
        paths = [f"/stocks/{s}/{endpoint}" for s in symbols]
        n = requests if endpoint == "price" else max(200, requests // 10)
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(repeats):
            for name, app in apps.items():  # interleaved, so drift hits all alike
                samples[name].append(await cpu_per_request(app, paths, n))
        out[endpoint] = {name: round(min(v), 1) for name, v in samples.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(msgspec.json.encode(asyncio.run(measure(args.requests, args.repeats))).decode())


if __name__ == "__main__":
    main()
