"""Backfill claim, execution and DLQ against the real database and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from market_data import db
from market_data.backfill.claim import OTHER, claim_jobs, plan_batches, release_expired_leases
from market_data.backfill.dlq import list_dead, mark_batch_dead, purge_dead, requeue_dead
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.backfill.execute import chunks, run_backfill_batch
from market_data.backfill.manual import (
    ManualBackfill,
    ManualBackfillRefused,
    active_universe,
    check_manual,
    submit_manual_backfill,
)
from market_data.policy import LoadedPolicy, parse_policy
from market_data.policy.schema import Duration, SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry

ROOT = Path(__file__).resolve().parents[2]
POLICY = parse_policy((ROOT / "include" / "policy.toml").read_text())
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def rng(symbol: str, a: int, b: int, tier: Tier = Tier.T0, source: str = "gap") -> BackfillRange:
    return BackfillRange(
        symbol=symbol,
        interval=Interval.M1,
        start=MON + timedelta(minutes=a),
        end=MON + timedelta(minutes=b),
        tier=tier,
        source=source,
    )  # type: ignore[arg-type]


def registry(**faults) -> ProviderRegistry:
    return ProviderRegistry(
        POLICY,
        {
            "synthetic": SyntheticProvider("synthetic", SyntheticFaults(**faults), clock=lambda: NOW),
            "synthetic_backup": SyntheticProvider(
                "synthetic_backup", SyntheticFaults(**faults), clock=lambda: NOW
            ),
        },
        retry_wait=lambda _s: 0.0,
    )


@pytest.fixture
async def pool(md_dsn: str, conn):
    p = await asyncpg.create_pool(md_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


async def test_claims_most_urgent_then_oldest_and_skips_locked_rows(md_dsn: str, conn) -> None:
    await enqueue_backfills(conn, [rng("MRK", 0, 5, Tier.T2)], POLICY)
    await enqueue_backfills(conn, [rng("V", 0, 5, Tier.T1)], POLICY)
    await enqueue_backfills(conn, [rng("AAPL", 0, 5, Tier.T0)], POLICY)
    await enqueue_backfills(conn, [rng("MSFT", 0, 5, Tier.T0)], POLICY)
    await enqueue_backfills(conn, [rng("CVX", 0, 5, Tier.T2, "manual")], POLICY)
    claimed = await claim_jobs(conn, "run-a", 3, timedelta(minutes=15))
    assert [j.symbol for j in claimed] == ["CVX", "AAPL", "MSFT"]
    # two concurrent claimers never get the same job
    others = [await db.connect(md_dsn) for _ in range(2)]
    try:
        a, b = await asyncio.gather(
            *(claim_jobs(c, f"run-{i}", 10, timedelta(minutes=15)) for i, c in enumerate(others))
        )
    finally:
        for c in others:
            await c.close()
    assert sorted(j.symbol for j in a + b) == ["MRK", "V"]


async def test_expired_leases_return_to_the_queue(conn) -> None:
    await enqueue_backfills(conn, [rng("AAPL", 0, 5), rng("MSFT", 0, 5)], POLICY)
    await claim_jobs(conn, "dead-worker", 10, timedelta(minutes=15))
    await conn.execute(
        "UPDATE backfill_jobs SET lease_until = now() - interval '1 second' WHERE symbol = 'AAPL'"
    )
    assert await release_expired_leases(conn) == 1
    row = await conn.fetchrow("SELECT status, run_id, last_error FROM backfill_jobs WHERE symbol = 'AAPL'")
    assert (row["status"], row["run_id"]) == ("queued", None) and "lease expired" in row["last_error"]
    assert await conn.fetchval("SELECT status FROM backfill_jobs WHERE symbol = 'MSFT'") == "running"


async def test_batches_go_to_the_best_provider_in_batch_size_chunks(conn) -> None:
    await enqueue_backfills(conn, [rng(s, 0, 5) for s in ("AAPL", "MSFT", "NVDA", "AMZN", "META")], POLICY)
    small = msgspec.structs.replace(POLICY, backfill=msgspec.structs.replace(POLICY.backfill, batch_size=2))
    jobs = await claim_jobs(conn, "run-b", 10, timedelta(minutes=15))
    out = await plan_batches(
        conn,
        jobs,
        registry(),
        small,
        run_id="run-b",
        policy_version=1,
        task_groups=["synthetic", "synthetic_backup"],
    )
    assert [len(b.jobs) for b in out["synthetic"]] == [2, 2, 1]
    assert out["synthetic_backup"] == [] and out[OTHER] == []
    assert [b.batch for b in out["synthetic"]] == ["synthetic:0", "synthetic:1", "synthetic:2"]
    stored = dict(await conn.fetch("SELECT symbol, batch FROM backfill_jobs"))
    assert stored["AAPL"] == "synthetic:0" and stored["META"] == "synthetic:2"


async def test_while_every_breaker_is_open_jobs_wait_in_the_queue_and_one_probes(conn) -> None:
    """An outage of every provider must not burn the queue's retries into the DLQ."""
    import time

    from market_data.registry.breaker import BreakerState

    await enqueue_backfills(conn, [rng(s, 0, 5) for s in ("AAPL", "MSFT", "NVDA")], POLICY)
    reg = registry()

    async def open_breakers(opened_ago: float) -> None:
        state = BreakerState(state="open", opened_at=time.time() - opened_ago, cooldown=60, reason="outage")
        for name in ("synthetic", "synthetic_backup"):
            await reg.store.transition(name, lambda _s: (state, state))

    async def plan(run_id: str) -> dict:
        jobs = await claim_jobs(conn, run_id, 10, timedelta(minutes=15))
        return await plan_batches(
            conn,
            jobs,
            reg,
            POLICY,
            run_id=run_id,
            policy_version=1,
            task_groups=["synthetic", "synthetic_backup"],
        )

    await open_breakers(opened_ago=1)  # cooling down: nobody may call
    out = await plan("run-down")
    assert all(v == [] for v in out.values())
    rows = await conn.fetch("SELECT status, run_id, last_error FROM backfill_jobs")
    assert [(r["status"], r["run_id"]) for r in rows] == [("queued", None)] * 3
    assert all("open breaker (synthetic, synthetic_backup)" in r["last_error"] for r in rows)

    await open_breakers(opened_ago=61)  # the cooldown is over: one job probes, the others wait
    out = await plan("run-probe")
    batches = [b for v in out.values() for b in v]
    assert [len(b.jobs) for b in batches] == [1]
    assert [b.jobs[0].symbol for b in batches] == ["AAPL"]  # the oldest, most urgent
    assert dict(await conn.fetch("SELECT status, count(*) FROM backfill_jobs GROUP BY 1")) == {
        "running": 1,
        "queued": 2,
    }


async def test_a_batch_stores_bars_records_empty_minutes_and_finishes(pool, conn) -> None:
    await enqueue_backfills(conn, [rng("AAPL", 0, 60), rng("MSFT", 0, 60)], POLICY)
    jobs = await claim_jobs(conn, "run-c", 10, timedelta(minutes=15))
    reg = registry(no_trade_rate=0.1)
    batches = await plan_batches(
        conn, jobs, reg, POLICY, run_id="run-c", policy_version=1, task_groups=["synthetic"]
    )
    outcome = await run_backfill_batch(pool, POLICY, batches["synthetic"][0], reg)
    assert outcome.done == 2 and outcome.bars_inserted > 100
    assert await conn.fetchval("SELECT count(*) FROM backfill_jobs WHERE status = 'done'") == 2
    # every expected minute is either stored or confirmed empty, and nothing else is empty
    for sym in ("AAPL", "MSFT"):
        stored = {r[0] for r in await conn.fetch("SELECT ts FROM bars WHERE symbol = $1", sym)}
        empty = await conn.fetch("SELECT start_ts, end_ts FROM confirmed_empty_ranges WHERE symbol = $1", sym)
        empty_minutes = {
            s + timedelta(minutes=k) for s, e in empty for k in range(int((e - s).seconds // 60))
        }
        assert empty_minutes and not (stored & empty_minutes)
        assert stored | empty_minutes == {MON + timedelta(minutes=k) for k in range(60)}
    run = await conn.fetchrow(
        "SELECT outcome, jobs_done, finished_at > started_at AS ok FROM backfill_batch_runs"
    )
    assert (run["outcome"], run["jobs_done"], run["ok"]) == ("done", 2, True)


async def test_no_data_for_recent_minutes_is_not_confirmed_empty_until_they_settle(pool, conn) -> None:
    """A vendor that has not published the last minutes yet answers them with no data: the job
    goes back to the queue, narrowed to those minutes, and a later run stores them."""
    clock = [MON + timedelta(minutes=30)]
    late = SyntheticFaults(drop_rate=1.0, drop_heal=Duration("10m"))  # every bar is 10 minutes late
    reg = ProviderRegistry(
        POLICY,
        {
            name: SyntheticProvider(name, late, clock=lambda: clock[0])
            for name in ("synthetic", "synthetic_backup")
        },
        retry_wait=lambda _s: 0.0,
    )
    await enqueue_backfills(conn, [rng("AAPL", 0, 30)], POLICY)

    async def run_once(run_id: str):
        jobs = await claim_jobs(conn, run_id, 10, timedelta(minutes=15))
        groups = ["synthetic", "synthetic_backup"]  # the first answer's gaps may rank the backup first
        batches = await plan_batches(
            conn, jobs, reg, POLICY, run_id=run_id, policy_version=1, task_groups=groups
        )
        (batch,) = [b for g in groups for b in batches[g]]
        return await run_backfill_batch(pool, POLICY, batch, reg, now=clock[0])

    first = await run_once("run-late-1")
    assert (first.done, first.deferred, first.empty_ranges, first.bars_inserted) == (0, 1, 0, 20)
    job = await conn.fetchrow("SELECT status, start_ts, end_ts, run_id, last_error FROM backfill_jobs")
    assert (job["status"], job["start_ts"], job["run_id"]) == ("queued", MON + timedelta(minutes=20), None)
    assert "no data yet" in job["last_error"]
    assert await conn.fetchval("SELECT count(*) FROM confirmed_empty_ranges") == 0

    clock[0] += timedelta(minutes=10)  # the vendor has published them now
    second = await run_once("run-late-2")
    assert (second.done, second.deferred, second.empty_ranges, second.bars_inserted) == (1, 0, 0, 10)
    assert await conn.fetchval("SELECT status FROM backfill_jobs") == "done"
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM bars WHERE symbol = 'AAPL' AND ts >= $1 AND ts < $2",
            MON,
            MON + timedelta(minutes=30),
        )
        == 30
    )


async def test_a_failing_batch_records_its_error_and_the_dlq_takes_exactly_its_jobs(pool, conn) -> None:
    await enqueue_backfills(conn, [rng(s, 0, 30) for s in ("AAPL", "MSFT", "NVDA")], POLICY)
    small = msgspec.structs.replace(POLICY, backfill=msgspec.structs.replace(POLICY.backfill, batch_size=2))
    jobs = await claim_jobs(conn, "run-d", 10, timedelta(minutes=15))
    broken = registry(error_rate=1.0)
    batches = await plan_batches(
        conn, jobs, broken, small, run_id="run-d", policy_version=1, task_groups=["synthetic"]
    )
    first, second = batches["synthetic"]
    with pytest.raises(Exception, match="synthetic 500"):
        await run_backfill_batch(pool, small, first, broken)
    errors = dict(
        await conn.fetch("SELECT symbol, last_error FROM backfill_jobs WHERE batch = 'synthetic:0'")
    )
    assert all("synthetic 500" in e for e in errors.values())
    # the failure callback after the last retry: exactly batch 0's jobs are dead
    assert await mark_batch_dead(conn, "run-d", "synthetic:0", "ServerError: synthetic 500") == 2
    statuses = dict(await conn.fetch("SELECT symbol, status FROM backfill_jobs"))
    assert statuses == {"AAPL": "dead", "MSFT": "dead", "NVDA": "running"}
    dead = await list_dead(conn, 10)
    assert [d.symbol for d in dead] == ["MSFT", "AAPL"] and dead[0].last_error.startswith("ServerError")
    # clearing the failed task runs the same batch again: exactly its dead jobs, now healthy
    outcome = await run_backfill_batch(pool, small, first, registry(), try_number=2)
    assert outcome.done == 2
    statuses = dict(await conn.fetch("SELECT symbol, status FROM backfill_jobs"))
    assert statuses == {"AAPL": "done", "MSFT": "done", "NVDA": "running"}
    assert second.jobs[0].symbol == "NVDA"


async def test_requeue_and_purge(conn) -> None:
    await enqueue_backfills(conn, [rng("AAPL", 0, 5), rng("MSFT", 0, 5)], POLICY)
    await claim_jobs(conn, "run-e", 10, timedelta(minutes=15))
    await conn.execute("UPDATE backfill_jobs SET batch = 'synthetic:0'")
    await mark_batch_dead(conn, "run-e", "synthetic:0", "boom")
    job = await conn.fetchval("SELECT id FROM backfill_jobs WHERE symbol = 'AAPL'")
    assert await requeue_dead(conn, job) is True
    assert await requeue_dead(conn, job) is False  # not dead any more
    row = await conn.fetchrow(
        "SELECT status, run_id, attempts, last_error FROM backfill_jobs WHERE id = $1", job
    )
    assert (row["status"], row["run_id"], row["attempts"], row["last_error"]) == ("queued", None, 0, "boom")
    await conn.execute(
        "UPDATE backfill_jobs SET updated_at = now() - interval '20 days' WHERE status = 'dead'"
    )
    assert await purge_dead(conn, timedelta(days=14)) == 1
    assert await purge_dead(conn, timedelta(days=14)) == 0


async def test_manual_requests_are_checked_against_the_policy(conn) -> None:
    known = await active_universe(conn)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    ok = ManualBackfill(symbols=["AAPL"], interval=Interval.M1, start=MON, end=MON + timedelta(hours=6))
    assert check_manual(ok, POLICY, now, known) == []
    bad = ManualBackfill(
        symbols=["AAPL", "NOPE"],
        interval=Interval.M1,
        start=now - timedelta(days=1000),
        end=now + timedelta(days=1),
    )
    paths = sorted(p.path for p in check_manual(bad, POLICY, now, known))
    assert paths == ["end", "end", "start", "symbols"]


async def test_daily_bars_may_be_backfilled_back_to_2000_and_intraday_bars_two_years(conn) -> None:
    known = await active_universe(conn)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    start = datetime(2000, 1, 3, tzinfo=UTC)
    daily = ManualBackfill(
        symbols=["AAPL"], interval=Interval.D1, start=start, end=start + timedelta(days=3000)
    )
    assert check_manual(daily, POLICY, now, known) == []  # eight years of daily bars in one request
    decade = msgspec.structs.replace(daily, end=start + timedelta(days=3661))
    assert [str(p) for p in check_manual(decade, POLICY, now, known)] == [
        "end: the range is longer than backfill.max_range for 1d bars (3660d)"
    ]
    minute = ManualBackfill(
        symbols=["AAPL"],
        interval=Interval.M1,
        start=datetime(2020, 8, 28, 13, 30, tzinfo=UTC),
        end=datetime(2020, 8, 28, 20, 0, tzinfo=UTC),
    )
    (problem,) = check_manual(minute, POLICY, now, known)
    assert str(problem) == "start: is older than backfill.max_age for 1m bars (730d)"


async def test_a_manual_request_is_queued_once_per_symbol_or_refused_whole(conn) -> None:
    loaded = LoadedPolicy(version=7, policy=POLICY, body="", source="test")
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    end = MON + timedelta(hours=6)
    refused = await submit_manual_backfill(
        conn,
        ManualBackfill(symbols=["AAPL", "NOPE"], interval=Interval.M5, start=MON, end=end),
        loaded,
        now,
        source="api",
        actor="tests",
    )
    assert isinstance(refused, ManualBackfillRefused) and [p.path for p in refused.problems] == ["symbols"]
    assert "NOPE" in str(refused)
    assert await conn.fetchval("SELECT count(*) FROM backfill_jobs") == 0
    assert await conn.fetchval("SELECT count(*) FROM backfill_requests") == 0
    queued = await submit_manual_backfill(
        conn,
        ManualBackfill(symbols=["AAPL", "MSFT", "AAPL"], interval=Interval.M5, start=MON, end=end),
        loaded,
        now,
        source="manual",
        actor="tests",
    )
    assert not isinstance(queued, ManualBackfillRefused) and queued.enqueued.inserted == 2
    rows = await conn.fetch(
        "SELECT symbol, source, priority, policy_version FROM backfill_jobs ORDER BY symbol"
    )
    manual = POLICY.backfill.priorities["manual"]
    assert [tuple(r) for r in rows] == [("AAPL", "manual", manual, 7), ("MSFT", "manual", manual, 7)]


def test_chunks_respect_the_provider_range() -> None:
    from market_data.backfill.claim import ClaimedJob

    job = ClaimedJob(
        id=1,
        symbol="A",
        interval=Interval.M1,
        start=MON,
        end=MON + timedelta(days=20),
        tier=Tier.T0,
        exchange_mic="XNYS",
        source="gap",
    )
    parts = chunks(job, timedelta(days=7))
    assert [(p[1] - p[0]).days for p in parts] == [7, 7, 6]
    assert parts[0][0] == job.start and parts[-1][1] == job.end
    assert chunks(job, None) == [(job.start, job.end)]
