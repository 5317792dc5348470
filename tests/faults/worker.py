"""A task process for the fault tests: runs one sweep or backfill batch, as an Airflow task would.

    python -m tests.faults.worker sweep|backfill '<JSON spec>'

The spec names the database, the policy text, the batch (as the mapped task's XCom holds it),
the synthetic providers' clock and fault knobs. The result is printed as JSON on the last
line of stdout; a failure exits non-zero with the traceback on stderr, as a failed task does.
Providers are the synthetic ones with a fixed clock, so every process computes the same bars.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from market_data.backfill.claim import BackfillBatch
from market_data.backfill.execute import run_backfill_batch
from market_data.ingest.sweep import SweepBatch, run_sweep_batch
from market_data.policy import parse_policy
from market_data.policy.schema import SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.registry import ProviderRegistry


def registry(spec: dict[str, Any]) -> ProviderRegistry:
    policy = parse_policy(spec["policy"])
    now = datetime.fromisoformat(spec["now"])
    faults = msgspec.convert(spec.get("faults") or {}, SyntheticFaults)
    return ProviderRegistry(
        policy,
        {
            name: SyntheticProvider(name, faults, clock=lambda: now)
            for name in ("synthetic", "synthetic_backup")
        },
        retry_wait=lambda _s: 0.0,
    )


async def sweep(spec: dict[str, Any]) -> object:
    policy = parse_policy(spec["policy"])
    batch = msgspec.convert(spec["batch"], SweepBatch)
    conn = await asyncpg.connect(spec["dsn"])
    try:
        result = await run_sweep_batch(conn, policy, batch, registry(spec))
    finally:
        await conn.close()
    return msgspec.to_builtins(result)


async def backfill(spec: dict[str, Any]) -> object:
    policy = parse_policy(spec["policy"])
    batch = msgspec.convert(spec["batch"], BackfillBatch)
    pool = await asyncpg.create_pool(spec["dsn"], min_size=1, max_size=4)
    try:
        outcome = await run_backfill_batch(
            pool, policy, batch, registry(spec), try_number=int(spec.get("try_number", 1))
        )
    finally:
        await pool.close()
    return msgspec.to_builtins(outcome)


def main() -> int:
    command = sys.argv[1]
    spec = json.loads(sys.argv[2])
    out = asyncio.run({"sweep": sweep, "backfill": backfill}[command](spec))
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
