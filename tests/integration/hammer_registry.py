"""Hammer one provider through a shared registry; print the call times (one process of a test).

Usage: python hammer_registry.py PREFIX CALLS_PER_MINUTE WINDOW_SECONDS SECONDS OUTFILE
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from market_data.policy import parse_policy
from market_data.providers.base import BarRequest
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings


async def main(prefix: str, cpm: int, window: int, seconds: float, out: str) -> None:
    policy = parse_policy(
        f'[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n'
        f"[providers.synthetic]\ncalls_per_minute = {cpm}\n"
    )
    calls: list[float] = []
    adapter = SyntheticProvider("synthetic", on_call=lambda *_: calls.append(time.time()))
    settings = msgspec.structs.replace(get_settings(), redis_prefix=prefix)
    registry = ProviderRegistry.shared(
        policy, settings, adapters={"synthetic": adapter}, limit_window_seconds=window
    )
    req = BarRequest(
        symbols=("AAPL",),
        exchange_mic="XNYS",
        interval=Interval.M1,
        start=datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
        end=datetime(2026, 11, 23, 14, 35, tzinfo=UTC),
    )
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await registry.fetch_bars(req)

    await asyncio.gather(*(worker() for _ in range(20)))
    await registry.aclose()
    Path(out).write_text("\n".join(f"{t:.6f}" for t in calls))  # noqa: ASYNC240 - after the run


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
