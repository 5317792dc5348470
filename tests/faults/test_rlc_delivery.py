"""Fault 5: RLC messages delivered twice, three times, out of order, across runs that fail.

The reference is a single delivery of every message, in order, in one run. Each scenario
(seeded, printed) delivers each message one to three times, shuffles them, pushes them in
several waves, and ends some runs as failed (their messages go back to the head of the list,
as a failed report task does). After the list is empty and the backfill queue is drained,
the store must hold exactly what the reference holds: the same bars (one version each, same
values), the same quotes, the same cursors, nothing rejected, nothing left in Redis.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from market_data.backfill.claim import claim_jobs, plan_batches
from market_data.backfill.execute import run_backfill_batch
from market_data.ingest.rlc import finish_rlc_run, source_list
from market_data.ingest.sweep import plan_sweep, run_sweep_batch
from market_data.policy import LoadedPolicy, parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Tier
from market_data.registry import ProviderRegistry
from tests.conftest import CLEAN_TABLES
from tests.faults.conftest import NOW, assert_integrity, market_dsn, policy_text

SCENARIOS = 25
TEXT = policy_text(mode="rlc", rlc_list="mdfaults:rlc:jobs")
LOADED = LoadedPolicy(version=1, policy=parse_policy(TEXT), body=TEXT, source="test")
POLICY = LOADED.policy
SRC = source_list(POLICY, Tier.T0)


def bars(symbol: str, start: str, end: str, interval: str = "1m", **extra: Any) -> bytes:
    return json.dumps(
        {"kind": "bars", "symbol": symbol, "interval": interval, "start": start, "end": end, **extra}
    ).encode()


MESSAGES = [
    bars("AAPL", "2026-11-23T15:00:00Z", "2026-11-23T15:15:00Z", id="a-1"),
    bars("AAPL", "2026-11-23T15:30:00Z", "2026-11-23T15:45:00Z", id="a-2"),  # leaves a hole behind it
    bars("MSFT", "2026-11-23T14:30:00Z", "2026-11-23T15:00:00Z"),
    bars("MSFT", "2026-11-23T14:45:00Z", "2026-11-23T15:20:00Z"),  # overlaps the one before
    bars("NVDA", "2026-11-23T15:00:00+00:00", "2026-11-23T15:30:00+00:00"),
    bars("AMZN", "2026-11-23T10:40:00-05:00", "2026-11-23T11:00:00-05:00"),  # same instants, New York time
    bars("META", "2026-11-23T14:30:00Z", "2026-11-23T15:30:00Z", interval="5m"),
    json.dumps({"kind": "quotes", "symbol": "AMZN"}).encode(),
    json.dumps({"kind": "quotes", "symbol": "NVDA", "id": "q-1"}).encode(),
]


def registry() -> ProviderRegistry:
    # One provider: which of two identical ones answers depends on their measured latency
    # (the health score), and a bar or quote from another provider is another source's record.
    return ProviderRegistry(
        POLICY, {"synthetic": SyntheticProvider(clock=lambda: NOW)}, retry_wait=lambda _s: 0.0
    )


async def one_run(conn: asyncpg.Connection, r: aioredis.Redis, run_id: str, *, fail: bool) -> None:
    batches = await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=r, run_id=run_id)
    reg = registry()
    for b in batches:
        await run_sweep_batch(conn, POLICY, b, reg)
    await finish_rlc_run(r, POLICY, Tier.T0, run_id, succeeded=not fail)


async def drain_backfills(conn: asyncpg.Connection, pool: asyncpg.Pool) -> int:
    """Run md_backfill's steps until the queue is empty; returns the jobs done."""
    done = 0
    for n in range(10):
        jobs = await claim_jobs(conn, f"backfill-{n}", 500, timedelta(minutes=15))
        if not jobs:
            return done
        reg = registry()
        planned = await plan_batches(
            conn, jobs, reg, POLICY, run_id=f"backfill-{n}", policy_version=1, task_groups=["synthetic"]
        )
        for group in planned.values():
            for b in group:
                done += (await run_backfill_batch(pool, POLICY, b, reg)).done
    raise AssertionError("the backfill queue did not drain")


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "bars": [
            tuple(r)
            for r in await conn.fetch(
                """SELECT symbol, interval, ts, provider, open, high, low, close, volume, vwap, trade_count,
                          count(*) OVER (PARTITION BY symbol, interval, ts) AS versions
                   FROM bars ORDER BY symbol, interval, ts"""
            )
        ],
        "quotes": [
            tuple(r) for r in await conn.fetch("SELECT symbol, ts, provider, last FROM quotes ORDER BY 1, 2")
        ],
        "cursors": [
            tuple(r)
            for r in await conn.fetch(
                "SELECT symbol, interval, provider, last_ts FROM ingestion_cursors ORDER BY 1, 2, 3"
            )
        ],
        "rejected": [tuple(r) for r in await conn.fetch("SELECT reason FROM rejected_jobs")],
        "unfinished_backfills": [
            tuple(r) for r in await conn.fetch("SELECT id FROM backfill_jobs WHERE status <> 'done'")
        ],
    }


def difference(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> str:
    out = []
    for key in want:
        missing = sorted(set(want[key]) - set(got[key]))
        extra = sorted(set(got[key]) - set(want[key]))
        if missing or extra:
            out.append(
                f"{key}: {len(missing)} missing (e.g. {missing[:2]}), {len(extra)} extra (e.g. {extra[:2]})"
            )
    return "; ".join(out)


async def reset(conn: asyncpg.Connection, r: aioredis.Redis) -> None:
    await conn.execute(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY")
    await r.flushall()


async def test_duplicated_and_reordered_messages_store_what_a_single_delivery_stores(
    pg, redis_server
) -> None:
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    r = aioredis.from_url(redis_server.url)
    try:
        # the reference: every message once, in order, one run
        await r.rpush(SRC, *MESSAGES)
        await one_run(conn, r, "reference", fail=False)
        reference_backfills = await drain_backfills(conn, pool)
        reference = await snapshot(conn)
        assert reference_backfills > 0  # AAPL's hole was found and filled
        assert {v[-1] for v in reference["bars"]} == {1} and reference["rejected"] == []
        await assert_integrity(dsn)

        rng = random.Random(5)
        with_failures = 0
        for case in range(SCENARIOS):
            await reset(conn, r)
            deliveries = [m for m in MESSAGES for _ in range(rng.randint(1, 3))]
            rng.shuffle(deliveries)
            waves = sorted(rng.sample(range(1, len(deliveries)), rng.randint(0, 3)))
            runs, failed = 0, 0
            for part in (
                deliveries[a:b] for a, b in zip([0, *waves], [*waves, len(deliveries)], strict=True)
            ):
                await r.rpush(SRC, *part)
                fail = rng.random() < 0.4
                await one_run(conn, r, f"case{case}-run{runs}", fail=fail)
                runs, failed = runs + 1, failed + fail
            while await r.llen(SRC):  # what failed runs gave back
                await one_run(conn, r, f"case{case}-run{runs}", fail=False)
                runs += 1
            await drain_backfills(conn, pool)
            got = await snapshot(conn)
            assert got == reference, (
                f"case {case}: {len(deliveries)} deliveries of {len(MESSAGES)} messages in "
                f"{len(waves) + 1} wave(s), {runs} runs ({failed} failed): {difference(got, reference)}"
            )
            assert [k async for k in r.scan_iter(match="mdfaults:rlc:*")] == []
            assert len(deliveries) > len(MESSAGES)  # every case re-delivers something
            with_failures += failed > 0
        assert with_failures >= 3
        await assert_integrity(dsn)
    finally:
        await r.aclose()
        await pool.close()
        await conn.close()
