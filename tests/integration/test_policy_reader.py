"""The policy reader against a real Postgres: what it keeps, for how long, and where it falls back."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from market_data.policy import PolicyReader
from market_data.policy.store import reload_policy

pytestmark = pytest.mark.usefixtures("restore_default_policy")
ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "include" / "policy.toml"
DEFAULT = POLICY_FILE.read_text()
NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1: refused at once


def with_batch(size: int) -> str:
    return re.sub(r"^batch_size = 250$", f"batch_size = {size}", DEFAULT, count=1, flags=re.M)


class CountingDsn:
    """A DSN callable that counts how often the reader went to Postgres."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.dsn


async def test_the_scheduler_reader_keeps_the_active_version_for_its_ttl(md_dsn: str, conn) -> None:
    stored, _ = await reload_policy(conn, with_batch(611), actor="tests")
    reader = PolicyReader(POLICY_FILE, ttl=60)
    dsn = CountingDsn(md_dsn)
    first = await asyncio.to_thread(reader.get_blocking, dsn)
    assert first is not None and (first.version, first.source) == (stored.version, "db")
    assert first.policy.tiers["T0"].batch_size == 611
    await reload_policy(conn, with_batch(612), actor="tests")
    assert await asyncio.to_thread(reader.get_blocking, dsn) is first
    assert dsn.calls == 1
    reader.invalidate()
    again = await asyncio.to_thread(reader.get_blocking, dsn)
    assert again is not None and again.policy.tiers["T0"].batch_size == 612 and dsn.calls == 2


def test_while_postgres_is_away_the_scheduler_reader_uses_the_file_then_gives_up(tmp_path: Path) -> None:
    dsn = CountingDsn(NOWHERE)
    loaded = PolicyReader(POLICY_FILE, ttl=60).get_blocking(dsn)
    assert loaded is not None and (loaded.version, loaded.source) == (1, str(POLICY_FILE))
    assert PolicyReader(tmp_path / "missing.toml", ttl=60).get_blocking(dsn) is None


def test_a_failed_read_is_kept_too_so_a_dead_database_costs_one_attempt_per_period() -> None:
    reader = PolicyReader(POLICY_FILE, ttl=60)
    dsn = CountingDsn(NOWHERE)
    assert reader.get_blocking(dsn) is reader.get_blocking(dsn)
    assert dsn.calls == 1


async def test_the_api_reader_forgets_its_copy_when_a_reload_is_announced(md_dsn: str, conn) -> None:
    reader = PolicyReader(POLICY_FILE, ttl=60)
    await reader.listen(md_dsn)
    try:
        before = await reader.get(conn)
        assert await reader.get(conn) is before  # kept
        stored, _ = await reload_policy(conn, with_batch(621), actor="tests")
        seen = before
        for _ in range(40):  # the md_policy notification arrives on the listener's connection
            seen = await reader.get(conn)
            if seen.version == stored.version:
                break
            await asyncio.sleep(0.05)
        assert seen.version == stored.version and seen.policy.tiers["T0"].batch_size == 621
    finally:
        await reader.close()
