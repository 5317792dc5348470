"""md_maintenance's partitions: every month a backfill may write, and the months ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from market_data.maintenance import run_maintenance
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
