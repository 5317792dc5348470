"""Fault 3: a task process SIGKILLed in the middle of its batch.

- A backfill batch killed after some of its jobs finished: the retry (the same batch, as
  Airflow runs it again) does the rest, and nothing is stored twice.
- A backfill batch killed and never retried (its worker is gone for good): its unfinished
  jobs stay leased until the lease runs out, then `release_expired_leases` (the next
  md_backfill run's first step) returns them to the queue and the next run finishes them.
- A sweep batch killed while its write transaction is open: the server rolls it back,
  nothing of it is visible, and the retry stores all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from market_data.backfill.claim import BackfillBatch, claim_jobs, plan_batches, release_expired_leases
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.ingest.sweep import SweepBatch
from market_data.jobs import Job
from market_data.policy import parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry
from tests.faults.conftest import (
    NOW,
    assert_integrity,
    backend_waiting_on_lock,
    finish_worker,
    market_dsn,
    policy_text,
    run_worker,
    start_worker,
    wait_for,
)

MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL"]
LEASE = 4.0
# one job at a time, each call slowed down, so a kill lands between two jobs of the batch
TEXT = policy_text(lease=f"{int(LEASE)}s").replace("max_concurrency = 8", "max_concurrency = 1", 1)
POLICY = parse_policy(TEXT)
SLOW = {"latency_ms": 400}
SYNTHETIC = SyntheticProvider("synthetic", clock=lambda: NOW)


def backfill_spec(batch: BackfillBatch, dsn: str, try_number: int = 1) -> dict[str, object]:
    return {
        "dsn": dsn,
        "policy": TEXT,
        "batch": msgspec.to_builtins(batch),
        "now": NOW.isoformat(),
        "faults": SLOW,
        "try_number": try_number,
    }


def registry() -> ProviderRegistry:
    return ProviderRegistry(
        POLICY,
        {n: SyntheticProvider(n, clock=lambda: NOW) for n in ("synthetic", "synthetic_backup")},
        retry_wait=lambda _s: 0.0,
    )


async def queue_and_claim(conn: asyncpg.Connection, run_id: str, symbols: list[str]) -> BackfillBatch:
    await enqueue_backfills(
        conn,
        [
            BackfillRange(
                symbol=s, interval=Interval.M1, start=MON, end=MON + timedelta(minutes=60), tier=Tier.T0
            )
            for s in symbols
        ],
        POLICY,
    )
    jobs = await claim_jobs(conn, run_id, 100, timedelta(seconds=LEASE))
    batches = await plan_batches(
        conn, jobs, registry(), POLICY, run_id=run_id, policy_version=1, task_groups=["synthetic"]
    )
    (batch,) = batches["synthetic"]
    assert len(batch.jobs) == len(symbols)
    return batch


async def statuses(conn: asyncpg.Connection) -> dict[str, str]:
    return dict(await conn.fetch("SELECT symbol, status FROM backfill_jobs"))


async def kill_mid_batch(conn: asyncpg.Connection, batch: BackfillBatch, dsn: str) -> subprocess.Popen[str]:
    """Start the batch in a task process and SIGKILL it once some (not all) of its jobs are done."""
    proc = start_worker("backfill", backfill_spec(batch, dsn))

    async def some_done() -> bool:
        return (
            2
            <= await conn.fetchval("SELECT count(*) FROM backfill_jobs WHERE status = 'done'")
            < len(batch.jobs)
        )

    await wait_for(some_done, 60, "two jobs of the batch to finish", interval=0.02)
    os.kill(proc.pid, signal.SIGKILL)
    code, _, _ = await asyncio.to_thread(finish_worker, proc)
    assert code == -signal.SIGKILL
    return proc


async def assert_bars_once(conn: asyncpg.Connection, symbols: list[str]) -> None:
    rows = await conn.fetch(
        "SELECT symbol, ts, close FROM bars WHERE symbol = ANY($1::text[]) ORDER BY symbol, ts", symbols
    )
    want = sorted(
        (b.symbol, b.ts, b.close)
        for s in symbols
        for b in SYNTHETIC.bars_for(s, "XNAS", Interval.M1, MON, MON + timedelta(minutes=60), NOW)
    )
    assert [tuple(r) for r in rows] == want  # each expected bar exactly once


async def test_the_retry_of_a_killed_backfill_batch_finishes_it(pg) -> None:
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    try:
        batch = await queue_and_claim(conn, "run-killed", SYMBOLS)
        await kill_mid_batch(conn, batch, dsn)
        before = await statuses(conn)
        done_before = sorted(s for s, st in before.items() if st == "done")
        assert set(before.values()) == {"done", "running"}, before
        # the retry: the same batch again, as Airflow's next try of the mapped task
        outcome = run_worker("backfill", backfill_spec(batch, dsn, try_number=2))
        assert outcome["skipped"] == len(done_before) and outcome["done"] == len(SYMBOLS) - len(done_before)
        assert set((await statuses(conn)).values()) == {"done"}
        await assert_bars_once(conn, SYMBOLS)
        runs = await conn.fetch("SELECT try_number, outcome FROM backfill_batch_runs ORDER BY id")
        assert [tuple(r) for r in runs] == [(1, None), (2, "done")]  # the killed try never finished
    finally:
        await conn.close()
    await assert_integrity(dsn)


async def test_jobs_of_a_dead_worker_return_to_the_queue_after_the_lease(pg) -> None:
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    try:
        batch = await queue_and_claim(conn, "run-abandoned", SYMBOLS)
        await kill_mid_batch(conn, batch, dsn)
        leased_until = await conn.fetchval(
            "SELECT max(lease_until) FROM backfill_jobs WHERE status = 'running'"
        )
        unfinished = sorted(s for s, st in (await statuses(conn)).items() if st == "running")
        assert unfinished
        assert await release_expired_leases(conn) == 0  # the lease still holds: nobody else takes them
        await asyncio.sleep(max(0.0, (leased_until - datetime.now(UTC)).total_seconds()) + 0.2)
        assert await release_expired_leases(conn) == len(unfinished)
        rows = await conn.fetch(
            "SELECT symbol, status, run_id, lease_until FROM backfill_jobs WHERE status <> 'done'"
        )
        assert sorted(r["symbol"] for r in rows) == unfinished
        assert all((r["status"], r["run_id"], r["lease_until"]) == ("queued", None, None) for r in rows)
        # the next run claims exactly those and finishes them
        jobs = await claim_jobs(conn, "run-next", 100, timedelta(minutes=15))
        assert sorted(j.symbol for j in jobs) == unfinished
        batches = await plan_batches(
            conn, jobs, registry(), POLICY, run_id="run-next", policy_version=1, task_groups=["synthetic"]
        )
        outcome = run_worker("backfill", backfill_spec(batches["synthetic"][0], dsn))
        assert outcome["done"] == len(unfinished)
        assert set((await statuses(conn)).values()) == {"done"}
        await assert_bars_once(conn, SYMBOLS)
    finally:
        await conn.close()
    await assert_integrity(dsn)


async def test_a_sweep_task_killed_inside_its_write_leaves_nothing_and_its_retry_stores_everything(
    pg,
) -> None:
    dsn = market_dsn(pg)
    start = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    jobs = [
        Job(
            kind="bars",
            symbol=s,
            interval=Interval.M1,
            start=start,
            end=NOW,
            exchange_mic="XNAS",
            tier=Tier.T0,
        )
        for s in SYMBOLS
    ]
    batch = SweepBatch(tier=Tier.T0, policy_version=1, now=NOW, jobs=jobs)
    spec = {"dsn": dsn, "policy": TEXT, "batch": msgspec.to_builtins(batch), "now": NOW.isoformat()}
    blocker = await asyncpg.connect(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE ingestion_cursors IN SHARE MODE")
        proc = start_worker("sweep", spec)
        pid = await wait_for(
            lambda: backend_waiting_on_lock(conn, "%INSERT INTO ingestion_cursors%"),
            60,
            "the writer to block",
        )
        os.kill(proc.pid, signal.SIGKILL)  # the task dies with its transaction open, bars inserted
        await asyncio.to_thread(finish_worker, proc)
        await blocker.execute("ROLLBACK")

        async def backend_gone() -> bool:
            return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)

        await wait_for(backend_gone, 30, "the dead task's backend to end")
        assert await conn.fetchval("SELECT count(*) FROM bars") == 0
        assert await conn.fetchval("SELECT count(*) FROM ingestion_cursors") == 0
        result = run_worker("sweep", spec)
        assert result["bars_inserted"] == await conn.fetchval("SELECT count(*) FROM bars") > 0
        assert await conn.fetchval("SELECT count(DISTINCT symbol) FROM ingestion_cursors") == len(SYMBOLS)
    finally:
        with contextlib.suppress(Exception):
            await blocker.close()
        await conn.close()
    await assert_integrity(dsn)
