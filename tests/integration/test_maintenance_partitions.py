"""md_maintenance's partitions: every month a backfill may write, and the months ahead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from market_data.maintenance import run_maintenance
from market_data.partitions import compact, due_for_compaction, needs_compaction
from market_data.policy import load_policy_file
from market_data.settings import get_settings


def month_partition(table: str, at: datetime) -> str:
    return f"{table}_{at:%Y%m}"


def months_from_now(months: int) -> datetime:
    """The 15th of the month `months` after this one."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 15, tzinfo=UTC)


async def test_bars_of_any_backfillable_month_land_in_their_monthly_partition(conn) -> None:
    policy = load_policy_file(get_settings().policy_file).policy
    result = await run_maintenance(conn, policy)
    assert result.partition_errors == {}
    now = datetime.now(UTC)
    oldest = now - policy.backfill.max_age.delta
    ahead = months_from_now(policy.retention.partitions_ahead)
    for at in (oldest, now - timedelta(days=400), now, ahead):
        assert await conn.fetchval("SELECT to_regclass($1)", month_partition("bars", at)) is not None, at
    old = oldest + timedelta(days=1)
    await conn.execute(
        """INSERT INTO bars (symbol, interval, ts, as_of, provider, open, high, low, close, volume)
           VALUES ('AAPL', '1d', $1, now(), 'synthetic', 1, 1, 1, 1, 1)""",
        old,
    )
    where = await conn.fetchval("SELECT tableoid::regclass::text FROM bars WHERE ts = $1", old)
    assert where == month_partition("bars", old)
    again = await run_maintenance(conn, policy)  # nothing left to create, nothing fails
    assert again.partition_errors == {} and again.partitions_created == {"bars": 0, "quotes": 0}


async def test_a_month_whose_rows_sit_in_the_default_partition_fails_alone(conn) -> None:
    policy = load_policy_file(get_settings().policy_file).policy
    ahead = policy.retention.partitions_ahead
    stray = months_from_now(ahead + 2)  # no partition yet: the row goes to quotes_default
    await conn.execute(
        "INSERT INTO quotes (symbol, ts, provider, last) VALUES ('AAPL', $1, 'synthetic', 1)", stray
    )
    try:
        further = msgspec.structs.replace(policy.retention, partitions_ahead=ahead + 4)
        result = await run_maintenance(conn, msgspec.structs.replace(policy, retention=further))
        assert list(result.partition_errors) == [f"quotes:{ahead + 2:+d}"]
        after = month_partition("quotes", months_from_now(ahead + 3))
        assert await conn.fetchval("SELECT to_regclass($1)", after) is not None
    finally:
        await conn.execute("DELETE FROM quotes WHERE ts = $1", stray)


# --- compaction ---------------------------------------------------------------------------------
BAR_ROW = """
INSERT INTO bars (symbol, interval, ts, as_of, provider, open, high, low, close, volume)
SELECT s, '1m', t, t + interval '1 minute', 'synthetic', n, n, n, n, n
FROM generate_series($1::timestamptz, $1::timestamptz + interval '89 minutes', interval '1 minute') AS t,
     unnest($2::text[]) AS s, LATERAL (SELECT extract(epoch FROM t)::int8 AS n) v
ORDER BY t, s"""
"""Ninety minutes of 1m bars for each symbol, minute by minute across the symbols (as sweeps)."""

CORRECTION = """
INSERT INTO bars (symbol, interval, ts, as_of, provider, open, high, low, close, volume)
VALUES ('AAPL', '1m', $1::timestamptz, $1::timestamptz + interval '1 hour', 'synthetic', 1, 1, 1, 1, 1)"""
INDEX_ATTACHED = (
    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'bars_pkey'::regclass AND inhrelid = $1::regclass"
)
MANY_BARS = """
INSERT INTO bars (symbol, interval, ts, as_of, provider, open, high, low, close, volume)
SELECT 'S' || s, '1m', t, t + interval '1 minute', 'synthetic', 1, 1, 1, 1, 1
FROM generate_series($1::timestamptz, $1::timestamptz + interval '1499 minutes', interval '1 minute') AS t,
     generate_series(1, 200) AS s
ORDER BY t, s"""
ALL_VERSIONS = "SELECT * FROM bars WHERE ts >= $1 AND ts < $2 ORDER BY symbol, interval, ts, as_of"


async def test_a_closed_month_is_rewritten_in_key_order_and_reads_the_same(conn) -> None:
    policy = load_policy_file(get_settings().policy_file).policy
    await run_maintenance(conn, policy)  # partitions of the last two years exist
    month = months_from_now(-3)
    part = month_partition("bars", month)
    start = month.replace(day=10, hour=14, minute=30)
    symbols = ["MSFT", "AAPL", "NVDA", "AMZN"]
    await conn.execute(BAR_ROW, start, symbols)
    # a second version of one bar (a correction): compaction keeps every version
    await conn.execute(
        CORRECTION,
        start,
    )
    window = (month.replace(day=1, hour=0), months_from_now(-2).replace(day=1, hour=0))
    before = await conn.fetch(ALL_VERSIONS, *window)
    in_heap = f"SELECT symbol, ts FROM {part} ORDER BY ctid"  # test-only: the name is ours
    assert [r["symbol"] for r in await conn.fetch(in_heap)][:4] == sorted(symbols)  # minute-major
    assert part in await due_for_compaction(conn)

    assert await compact(conn, part) == len(before)

    assert await conn.fetch(ALL_VERSIONS, *window) == before
    heap = await conn.fetch(in_heap)
    assert [(r["symbol"], r["ts"]) for r in heap] == sorted((r["symbol"], r["ts"]) for r in heap)
    assert await conn.fetchval("SELECT to_regclass($1)", part + "_pkey") is not None
    assert await conn.fetchval(INDEX_ATTACHED, part + "_pkey") == 1
    assert part not in await due_for_compaction(conn)
    # the primary key still refuses a duplicate version
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            CORRECTION,
            start,
        )
    # grown by more than a tenth since (late backfills): due again
    await conn.execute(BAR_ROW, start + timedelta(days=1), symbols)
    await conn.execute(f"ANALYZE {part}")
    assert part in await due_for_compaction(conn)


async def test_maintenance_compacts_at_most_two_closed_months_per_run_oldest_first(conn) -> None:
    policy = load_policy_file(get_settings().policy_file).policy
    await run_maintenance(conn, policy)
    months = [months_from_now(k) for k in (-4, -3, -2, 0)]
    for m in months:
        await conn.execute(BAR_ROW, m.replace(hour=14, minute=30), ["AAPL"])
    result = await run_maintenance(conn, policy)
    assert list(result.partitions_compacted) == [month_partition("bars", m) for m in months[:2]]
    assert result.partition_errors == {}
    result = await run_maintenance(conn, policy)
    assert list(result.partitions_compacted) == [month_partition("bars", months[2])]  # never this month's
    assert (await run_maintenance(conn, policy)).partitions_compacted == {}


def test_only_partitions_with_rows_never_compacted_or_grown_since_need_it() -> None:
    assert not needs_compaction(0, None)
    assert needs_compaction(10, None)
    assert not needs_compaction(1_050, "md:compacted rows=1000 at=2026-11-02")
    assert needs_compaction(1_200, "md:compacted rows=1000 at=2026-11-02")


async def test_bars_written_to_the_month_during_its_compaction_are_kept_and_not_held_up(
    conn, md_dsn: str
) -> None:
    policy = load_policy_file(get_settings().policy_file).policy
    await run_maintenance(conn, policy)
    month = months_from_now(-5)
    part = month_partition("bars", month)
    start = month.replace(day=2, hour=0)
    await conn.execute(MANY_BARS, start)  # 300,000 rows: a copy that takes a while
    writer = await asyncpg.connect(md_dsn)
    try:
        compaction = asyncio.create_task(compact(conn, part))
        await asyncio.sleep(0.2)
        await writer.execute(CORRECTION, start)  # a late correction of that month
        assert not compaction.done()  # the writer did not wait for the copy
        assert await compaction == 300_001
    finally:
        await writer.close()
    assert await conn.fetchval("SELECT count(*) FROM bars WHERE symbol = 'AAPL' AND ts = $1", start) == 1
