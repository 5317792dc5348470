"""Policy versions: atomic activation, refusals change nothing, racing reloads, rollback, notify."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from market_data import db
from market_data.notifications import POLICY_CHANNEL
from market_data.policy import PolicyError, load_active_policy
from market_data.policy.loader import policy_checksum
from market_data.policy.store import (
    PolicyConflict,
    PolicyVersionNotFound,
    list_versions,
    reload_policy,
    rollback_policy,
)
from market_data.policy.validation import load_known_pools

pytestmark = pytest.mark.usefixtures("restore_default_policy")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
POOLS = load_known_pools(ROOT / "include")


def with_batch(size: int) -> str:
    return re.sub(r"^batch_size = 250$", f"batch_size = {size}", DEFAULT, count=1, flags=re.M)


async def state(conn) -> tuple[int, int, int | None]:
    total = await conn.fetchval("SELECT count(*) FROM policy_versions")
    active = await conn.fetchval("SELECT count(*) FROM policy_versions WHERE active")
    version = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
    return total, active, version


async def test_reload_stores_a_new_active_version_and_an_identical_body_is_a_no_op(conn) -> None:
    before = await state(conn)
    v, created = await reload_policy(conn, with_batch(111), actor="alice", known_pools=POOLS)
    assert created and v.active and v.version == before[2] + 1 and v.activated_by == "alice"
    again, created_again = await reload_policy(conn, with_batch(111), actor="bob", known_pools=POOLS)
    assert not created_again and again.version == v.version
    loaded = await load_active_policy(conn, ROOT / "include" / "policy.toml")
    assert loaded.version == v.version and loaded.policy.tiers["T0"].batch_size == 111


async def test_an_invalid_candidate_changes_nothing(conn) -> None:
    before = await state(conn)
    bad = with_batch(112).replace("breaker = 0.45", "breaker = 0.9")
    with pytest.raises(PolicyError) as exc:
        await reload_policy(conn, bad, actor="mallory", known_pools=POOLS)
    assert "health_weights" in [p.path for p in exc.value.problems]
    assert await state(conn) == before


async def test_racing_reloads_leave_exactly_one_active_consistent_version(md_dsn: str, conn) -> None:
    before_total, _, before_version = await state(conn)
    bodies = [with_batch(200 + i) for i in range(8)]
    conns = [await db.connect(md_dsn) for _ in bodies]
    try:
        results = await asyncio.gather(
            *(
                reload_policy(c, b, actor=f"op{i}", known_pools=POOLS)
                for i, (c, b) in enumerate(zip(conns, bodies, strict=True))
            )
        )
    finally:
        for c in conns:
            await c.close()
    total, active, version = await state(conn)
    assert active == 1
    assert total == before_total + 8
    numbers = sorted(v.version for v, _ in results)
    assert numbers == list(range(before_version + 1, before_version + 9))  # no gaps, no duplicates
    assert version == numbers[-1]
    rows = await conn.fetch("SELECT body, checksum FROM policy_versions")
    assert all(policy_checksum(r["body"]) == r["checksum"] for r in rows)
    winner = await conn.fetchval("SELECT body FROM policy_versions WHERE active")
    assert winner in bodies


async def test_expected_active_refuses_a_stale_reload(conn) -> None:
    _, _, version = await state(conn)
    await reload_policy(conn, with_batch(301), actor="a", known_pools=POOLS, expected_active=version)
    with pytest.raises(PolicyConflict):
        await reload_policy(conn, with_batch(302), actor="b", known_pools=POOLS, expected_active=version)
    assert (await load_active_policy(conn, ROOT / "include" / "policy.toml")).policy.tiers[
        "T0"
    ].batch_size == 301


async def test_rollback_activates_an_earlier_body_as_a_new_version(conn) -> None:
    first, _ = await reload_policy(conn, with_batch(401), actor="a", known_pools=POOLS)
    await reload_policy(conn, with_batch(402), actor="a", known_pools=POOLS)
    back, created = await rollback_policy(conn, first.version, actor="ops", known_pools=POOLS)
    assert created and back.version > first.version and back.note == f"rollback to version {first.version}"
    assert back.checksum == first.checksum
    with pytest.raises(PolicyVersionNotFound):
        await rollback_policy(conn, 99_999, actor="ops", known_pools=POOLS)
    history = await list_versions(conn, 3)
    assert [v.version for v in history] == sorted((v.version for v in history), reverse=True)


async def test_activation_notifies_listeners(md_dsn: str, conn) -> None:
    listener = await db.connect(md_dsn)
    heard: list[str] = []
    await listener.add_listener(POLICY_CHANNEL, lambda *a: heard.append(a[3]))
    try:
        v, _ = await reload_policy(conn, with_batch(501), actor="a", known_pools=POOLS)
        for _ in range(40):
            if heard:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert heard == [str(v.version)]


def test_json_is_not_confused_with_toml() -> None:
    with pytest.raises(PolicyError):
        from market_data.policy import parse_policy

        parse_policy(json.dumps({"tiers": {}}))
