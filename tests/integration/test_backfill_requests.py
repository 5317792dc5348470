"""Backfill requests against the real database: links that follow coalescing, status, bars, listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import asyncpg
import msgspec
import pytest

from market_data.backfill.claim import claim_jobs, plan_batches
from market_data.backfill.dlq import mark_batch_dead, purge_dead
from market_data.backfill.enqueue import enqueue_backfills
from market_data.backfill.execute import run_backfill_batch
from market_data.backfill.manual import ManualBackfill, QueuedRequest, submit_manual_backfill
from market_data.backfill.requests import JobCounts, get_request, list_jobs, recent_requests, request_status
from market_data.policy import LoadedPolicy
from market_data.records import Interval, Tier
from tests.conftest import TEST_ENV
from tests.integration.test_backfill import MON, NOW, POLICY, registry, rng

LOADED = LoadedPolicy(version=1, policy=POLICY, body="", source="test")


async def submit(conn, symbols: list[str], a: int, b: int, *, policy: LoadedPolicy = LOADED) -> QueuedRequest:
    req = ManualBackfill(
        symbols=symbols,
        interval=Interval.M1,
        start=MON + timedelta(minutes=a),
        end=MON + timedelta(minutes=b),
    )
    queued = await submit_manual_backfill(conn, req, policy, NOW, source="api", actor="tests")
    assert isinstance(queued, QueuedRequest), queued
    return queued


@pytest.fixture
async def pool(md_dsn: str, conn):
    p = await asyncpg.create_pool(md_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.mark.parametrize(
    "counts,refused,status",
    [
        (JobCounts(queued=2), {}, "queued"),
        (JobCounts(running=1, queued=1), {}, "running"),
        (JobCounts(done=1, queued=1), {}, "running"),
        (JobCounts(dead=1, queued=1), {}, "running"),
        (JobCounts(done=2), {}, "done"),
        (JobCounts(done=1, dead=1), {}, "failed"),
        (JobCounts(), {"T0": 2}, "refused"),
        (JobCounts(), {}, "purged"),
    ],
)
def test_a_requests_status_follows_its_jobs(counts: JobCounts, refused: dict[str, int], status: str) -> None:
    assert request_status(counts, refused) == status


async def test_a_request_merged_into_a_queued_gap_is_linked_to_that_job(conn) -> None:
    gap = await enqueue_backfills(conn, [rng("AAPL", 0, 30)], POLICY)
    queued = await submit(conn, ["AAPL", "MSFT"], 20, 60)
    assert (queued.enqueued.inserted, queued.enqueued.merged) == (1, 1)
    view = await get_request(conn, queued.request_id)
    assert view is not None and view.status == "queued" and view.job_counts == JobCounts(queued=2)
    by_symbol = {j.symbol: j for j in view.jobs}
    assert by_symbol["AAPL"].id == gap.job_ids[0]  # one job serves the gap and the request
    assert (by_symbol["AAPL"].start, by_symbol["AAPL"].end) == (MON, MON + timedelta(minutes=60))
    assert by_symbol["AAPL"].source == "gap" and by_symbol["AAPL"].request_ids == [queued.request_id]
    assert by_symbol["MSFT"].source == "api"
    assert (view.inserted, view.merged, view.source, view.actor) == (1, 1, "api", "tests")


async def test_a_job_absorbed_by_a_later_enqueue_hands_its_requests_to_the_job_that_absorbed_it(conn) -> None:
    first = await enqueue_backfills(conn, [rng("AAPL", 0, 30)], POLICY)
    r1 = await submit(conn, ["AAPL"], 60, 90)
    r2 = await submit(conn, ["AAPL"], 61, 70)  # merged into r1's job
    absorbed = (await get_request(conn, r1.request_id)).jobs[0].id  # type: ignore[union-attr]
    assert absorbed != first.job_ids[0]
    # a gap that bridges both merges them into the oldest job; r1's job is deleted
    await enqueue_backfills(conn, [rng("AAPL", 25, 65)], POLICY)
    assert await conn.fetchval("SELECT count(*) FROM backfill_jobs WHERE id = $1", absorbed) == 0
    for request_id in (r1.request_id, r2.request_id):
        view = await get_request(conn, request_id)
        assert view is not None and [j.id for j in view.jobs] == first.job_ids
        assert (view.jobs[0].start, view.jobs[0].end) == (MON, MON + timedelta(minutes=90))
    assert (await list_jobs(conn, symbol="AAPL"))[0].request_ids == sorted([r1.request_id, r2.request_id])


async def test_bars_written_and_errors_come_from_the_jobs_and_a_dead_job_fails_the_request(
    pool, conn
) -> None:
    ok = await submit(conn, ["AAPL", "MSFT"], 0, 30)
    jobs = await claim_jobs(conn, "run-r", 10, timedelta(minutes=15))
    batches = await plan_batches(
        conn, jobs, registry(), POLICY, run_id="run-r", policy_version=1, task_groups=["synthetic"]
    )
    running = await get_request(conn, ok.request_id)
    assert running is not None and running.status == "running"
    assert all(j.claimed_at is not None and j.run_id == "run-r" for j in running.jobs)
    for batch in batches["synthetic"]:
        await run_backfill_batch(pool, POLICY, batch, registry(), now=NOW)
    done = await get_request(conn, ok.request_id)
    assert done is not None and done.status == "done" and done.job_counts == JobCounts(done=2)
    assert done.bars_written == 2 * 30 and all(j.bars_inserted == 30 for j in done.jobs)
    assert done.errors == []

    bad = await submit(conn, ["NVDA"], 0, 30)
    await claim_jobs(conn, "run-s", 10, timedelta(minutes=15))
    await conn.execute("UPDATE backfill_jobs SET batch = 'synthetic:0' WHERE run_id = 'run-s'")
    await mark_batch_dead(conn, "run-s", "synthetic:0", "ServerError: HTTP 503 from synthetic")
    failed = await get_request(conn, bad.request_id)
    assert failed is not None and failed.status == "failed" and failed.bars_written == 0
    assert [(e.symbol, e.status, e.error) for e in failed.errors] == [
        ("NVDA", "dead", "ServerError: HTTP 503 from synthetic")
    ]
    # purging the DLQ takes the dead job and its link; the request stays, without jobs
    await conn.execute(
        "UPDATE backfill_jobs SET updated_at = now() - interval '30 days' WHERE status = 'dead'"
    )
    assert await purge_dead(conn, timedelta(days=14)) == 1
    purged = await get_request(conn, bad.request_id)
    assert purged is not None and purged.status == "purged" and purged.jobs == []


async def test_ranges_refused_at_the_tier_cap_make_a_refused_request(conn) -> None:
    capped = msgspec.structs.replace(
        POLICY, backfill=msgspec.structs.replace(POLICY.backfill, caps={t: 0 for t in Tier})
    )
    queued = await submit(
        conn, ["AAPL"], 0, 30, policy=LoadedPolicy(version=1, policy=capped, body="", source="t")
    )
    view = await get_request(conn, queued.request_id)
    assert view is not None and view.status == "refused" and view.refused == {"T0": 1}


async def test_jobs_list_newest_first_by_status_and_symbol_in_bounded_pages(conn) -> None:
    await enqueue_backfills(conn, [rng(s, 0, 5) for s in ("AAPL", "MSFT", "NVDA")], POLICY)
    await submit(conn, ["AAPL"], 100, 130)
    await claim_jobs(conn, "run-l", 1, timedelta(minutes=15))  # the manual one: most urgent
    everything = await list_jobs(conn)
    assert [j.symbol for j in everything] == ["AAPL", "NVDA", "MSFT", "AAPL"]
    assert [j.status for j in everything] == ["running", "queued", "queued", "queued"]
    assert [j.symbol for j in await list_jobs(conn, status="queued")] == ["NVDA", "MSFT", "AAPL"]
    aapl = await list_jobs(conn, symbol="AAPL")
    assert [j.source for j in aapl] == ["api", "gap"] and aapl[1].request_ids == []
    first = await list_jobs(conn, limit=2)
    rest = await list_jobs(conn, limit=2, before_id=first[-1].id)
    assert [j.id for j in first + rest] == [j.id for j in everything]
    assert len(await list_jobs(conn, limit=10_000)) == 4  # bounded: MAX_PAGE at most


async def test_recent_requests_carry_their_job_counts(conn) -> None:
    a = await submit(conn, ["AAPL", "MSFT"], 0, 30)
    b = await submit(conn, ["NVDA"], 0, 30)
    listed = await recent_requests(conn, limit=10)
    assert [(r.request_id, r.status, r.job_counts.total) for r in listed] == [
        (b.request_id, "queued", 1),
        (a.request_id, "queued", 2),
    ]
    assert [r.request_id for r in await recent_requests(conn, before_id=b.request_id)] == [a.request_id]


def dev(*args: str) -> subprocess.CompletedProcess[str]:
    """What `./dev ARGS` runs (`python -m market_data.cli ARGS`), against the run's database.

    Not ./dev itself: it would reinstall the runtime requirements over the test venv's."""
    return subprocess.run(
        [sys.executable, "-m", "market_data.cli", *args],
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_dev_backfill_status_shows_a_request_and_lists_the_recent_ones(conn) -> None:
    queued = await submit(conn, ["AAPL", "MSFT"], 0, 30)
    await conn.execute(
        "UPDATE backfill_jobs SET status = 'dead', last_error = 'ServerError: boom' WHERE symbol = 'MSFT'"
    )
    one = dev("backfill", "status", str(queued.request_id))
    assert one.returncode == 0, one.stderr
    assert f"backfill request {queued.request_id}: running" in one.stdout
    assert "1 queued, 0 running, 0 done, 1 dead; 0 bars written" in one.stdout
    assert "MSFT (dead): ServerError: boom" in one.stdout
    listed = dev("backfill", "status")
    assert listed.returncode == 0 and f"{queued.request_id:>6}  running" in listed.stdout
    as_json = dev("backfill", "status", str(queued.request_id), "--json")
    assert json.loads(as_json.stdout)["job_counts"] == {"queued": 1, "running": 0, "done": 0, "dead": 1}
    missing = dev("backfill", "status", "999999")
    assert missing.returncode == 1 and "request_id: no backfill request 999999" in missing.stderr
