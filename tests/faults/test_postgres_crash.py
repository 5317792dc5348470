"""Fault 1: Postgres killed (SIGKILL of the whole server) in the middle of a sweep's write.

A sweep batch runs in its own task process. A second session holds a lock the writer needs,
which freezes it at a chosen point of its transaction; then the server is killed, restarted
(crash recovery from the WAL) and the batch retried, as Airflow retries a failed task:

- after its bars are inserted, before its cursors advance (LOCK TABLE ingestion_cursors);
- after the COPY into its staging table, before the insert (the per-symbol advisory lock);
- at a random moment of a large write (no lock: the kill lands wherever the writer is).

Each time the task fails, no part of the killed batch is visible after recovery, and once
retried every expected bar is stored exactly once (one version: the data did not change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime

import asyncpg
import msgspec

from market_data.ingest.sweep import SweepBatch, plan_sweep
from market_data.jobs import Job
from market_data.policy import LoadedPolicy, parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from tests.faults.conftest import (
    NOW,
    assert_integrity,
    backend_waiting_on_lock,
    exception_text,
    finish_worker,
    market_dsn,
    policy_text,
    run_worker,
    start_worker,
    wait_for,
)
from tests.faults.servers import PrivatePostgres

log = logging.getLogger(__name__)
TEXT = policy_text(batch_size=5)
POLICY = parse_policy(TEXT)
SYNTHETIC = SyntheticProvider("synthetic", clock=lambda: NOW)
CONNECTION_LOST = (
    "ConnectionDoesNotExistError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "CannotConnectNowError",
    "AdminShutdown",
    "ConnectionError",
    "OSError",
)


def spec(batch: SweepBatch, dsn: str) -> dict[str, object]:
    return {"dsn": dsn, "policy": TEXT, "batch": msgspec.to_builtins(batch), "now": NOW.isoformat()}


def expected_bars(batch: SweepBatch) -> dict[tuple[str, datetime], tuple[float, ...]]:
    """What a complete write of the batch stores: the synthetic provider's bars of each job."""
    out = {}
    for job in batch.jobs:
        assert job.interval is not None and job.start is not None and job.end is not None
        mic = job.exchange_mic or "XNYS"
        for b in SYNTHETIC.bars_for(job.symbol, mic, job.interval, job.start, min(job.end, NOW), NOW):
            out[(b.symbol, b.ts)] = (b.open, b.high, b.low, b.close, b.volume)
    return out


async def stored(
    conn: asyncpg.Connection, symbols: list[str]
) -> dict[tuple[str, datetime], tuple[float, ...]]:
    rows = await conn.fetch(
        "SELECT symbol, ts, open, high, low, close, volume FROM bars WHERE symbol = ANY($1::text[])", symbols
    )
    return {(r["symbol"], r["ts"]): (r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows}


async def cursors(conn: asyncpg.Connection, symbols: list[str]) -> dict[str, datetime]:
    rows = await conn.fetch(
        "SELECT symbol, max(last_ts) AS last_ts FROM ingestion_cursors"
        " WHERE symbol = ANY($1::text[]) GROUP BY 1",
        symbols,
    )
    return {r["symbol"]: r["last_ts"] for r in rows}


def symbols_of(batch: SweepBatch) -> list[str]:
    return sorted({j.symbol for j in batch.jobs})


async def assert_complete(conn: asyncpg.Connection, batch: SweepBatch) -> int:
    """Every expected bar of the batch once, with its values; cursors at the newest bar."""
    want = expected_bars(batch)
    assert await stored(conn, symbols_of(batch)) == want
    newest = {s: max(ts for (sym, ts) in want if sym == s) for s in symbols_of(batch)}
    assert await cursors(conn, symbols_of(batch)) == newest
    return len(want)


async def assert_absent(conn: asyncpg.Connection, batch: SweepBatch) -> None:
    """Nothing of the batch is visible: no bar, no cursor."""
    assert await stored(conn, symbols_of(batch)) == {}
    assert await cursors(conn, symbols_of(batch)) == {}


async def kill_while_frozen(
    pg: PrivatePostgres, dsn: str, batch: SweepBatch, lock_sql: str, waiting_on: str, *, wrote_bars: bool
) -> str:
    """Freeze the batch's writer on a lock held by another session, SIGKILL Postgres, restart it.

    Returns the exception the task process failed with.
    """
    blocker = await asyncpg.connect(dsn)
    observer = await asyncpg.connect(dsn)
    try:
        await blocker.execute("BEGIN")
        await blocker.execute(lock_sql)
        proc = start_worker("sweep", spec(batch, dsn))
        pid = await wait_for(lambda: backend_waiting_on_lock(observer, waiting_on), 60, "the writer to block")
        # the writer is inside its transaction: its rows (if any) are written but invisible
        holds_bars = await observer.fetchval(
            """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
               WHERE l.pid = $1 AND l.mode = 'RowExclusiveLock' AND c.relname LIKE 'bars%'""",
            pid,
        )
        assert bool(holds_bars) is wrote_bars
        assert await stored(observer, symbols_of(batch)) == {}
        pg.kill()
    finally:
        for c in (blocker, observer):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 2)
    code, _, err = await asyncio.to_thread(finish_worker, proc)
    assert code != 0, "the task must fail when its database goes away mid-write"
    failure = exception_text(err)
    assert any(name in err for name in CONNECTION_LOST), err[-2000:]  # the cause, in the traceback
    pg.start()
    return failure


async def test_postgres_killed_mid_write_shows_no_partial_batch_and_the_retry_completes_it(pg) -> None:
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    loaded = LoadedPolicy(version=1, policy=POLICY, body=TEXT, source="test")
    batches = await plan_sweep(conn, loaded, Tier.T0, NOW)
    await conn.close()
    # T0's 23 symbols (15 equities, 8 crypto pairs) in batches of 5; three batches are enough here
    assert len(batches) == 5 and all(j.kind == "bars" for b in batches for j in b.jobs)
    batches = batches[:3]

    first = run_worker("sweep", spec(batches[0], dsn))
    assert first["bars_inserted"] > 0

    # kill 1: bars inserted, cursors not yet advanced
    await kill_while_frozen(
        pg,
        dsn,
        batches[1],
        "LOCK TABLE ingestion_cursors IN SHARE MODE",
        "%INSERT INTO ingestion_cursors%",
        wrote_bars=True,
    )
    conn = await asyncpg.connect(dsn)
    total = await assert_complete(conn, batches[0])  # committed before the crash: all of it survived
    await assert_absent(conn, batches[1])
    await conn.close()
    await assert_integrity(dsn)

    # kill 2: staged by COPY, waiting for the per-symbol write lock (nothing inserted yet)
    key = f"{symbols_of(batches[2])[0]}|1m"
    await kill_while_frozen(
        pg,
        dsn,
        batches[2],
        f"SELECT pg_advisory_xact_lock(hashtextextended('{key}', 7))",
        "%pg_advisory_xact_lock%",
        wrote_bars=False,
    )
    conn = await asyncpg.connect(dsn)
    await assert_absent(conn, batches[2])
    await conn.close()

    # the retries (and a re-run of the batch that had finished: it adds nothing)
    for b in (batches[1], batches[2]):
        assert run_worker("sweep", spec(b, dsn))["bars_inserted"] > 0
    assert run_worker("sweep", spec(batches[0], dsn))["bars_inserted"] == 0
    conn = await asyncpg.connect(dsn)
    for b in batches[1:]:
        total += await assert_complete(conn, b)
    assert await conn.fetchval("SELECT count(*) FROM bars") == total  # one version each
    await conn.close()
    report = await assert_integrity(dsn)
    assert report.check("bar_versions_unique").checked == total


async def test_postgres_killed_at_a_random_moment_of_a_large_write(pg) -> None:
    """Three kills at random points of a ~20-session write: all of it or none, then all of it."""
    dsn = market_dsn(pg)
    rng = random.Random(20261123)
    start = datetime.fromisoformat("2026-10-26T13:30:00+00:00")  # 20 sessions before NOW
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
        for s in ("AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "AVGO", "TSLA", "COST", "NFLX")
    ]
    batch = SweepBatch(tier=Tier.T0, policy_version=1, now=NOW, jobs=jobs)
    outcomes = []
    observer_dsn = dsn
    for _ in range(3):
        proc = start_worker("sweep", spec(batch, dsn))
        observer = await asyncpg.connect(observer_dsn)

        async def writing(observer: asyncpg.Connection = observer) -> bool:
            return bool(
                await observer.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE state = 'active' AND pid <> pg_backend_pid()
                         AND (query ILIKE 'COPY%bars%' OR query ILIKE '%INSERT INTO bars%')"""
                )
            )

        await wait_for(writing, 60, "the write to start", interval=0.01)
        # the write of ~80,000 bars (straight COPY into bars) takes a few tenths of a second
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(observer.close(), 1)
        pg.kill()
        code, _, _err = await asyncio.to_thread(finish_worker, proc)
        pg.start()
        conn = await asyncpg.connect(dsn)
        have = await conn.fetchval("SELECT count(*) FROM bars")
        await conn.close()
        outcomes.append((code, have))
        if code == 0:
            break  # the write committed just before the kill: it must then be complete
    want = expected_bars(batch)
    for _code, have in outcomes:
        # all or nothing; a kill right after COMMIT fails the task with its write complete
        assert have in (0, len(want)), f"a partial batch is visible: {have} of {len(want)} bars"
    if outcomes[-1][0] != 0:
        run_worker("sweep", spec(batch, dsn))  # the retry
    conn = await asyncpg.connect(dsn)
    assert await stored(conn, symbols_of(batch)) == want
    assert await conn.fetchval("SELECT count(*) FROM bars") == len(want)
    await conn.close()
    await assert_integrity(dsn)
    log.info(
        "random kills: %s (exit code, bars visible after recovery); %d bars expected", outcomes, len(want)
    )
