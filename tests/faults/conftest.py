"""Fixtures of the fault tests: private Postgres and Redis servers, task processes, checks.

The servers are started once per test session (see servers.py) and each test starts from
empty data tables and an empty Redis; a test that kills a server restarts it before it ends,
and the next test's fixture restarts it anyway if it did not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from market_data import db
from market_data.integrity import IntegrityReport, run_integrity_checks
from market_data.policy import load_policy_file
from market_data.policy.store import store_initial_policy
from market_data.settings import get_settings
from market_data.universe import load_seed, upsert_universe
from tests.conftest import CLEAN_TABLES
from tests.faults.servers import PrivatePostgres, PrivateRedis

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = (ROOT / "include" / "policy.toml").read_text()
NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
"""A Monday, 90 minutes into the New York session: every synthetic clock stops here."""


def policy_text(
    *,
    batch_size: int | None = None,
    lease: str | None = None,
    mode: str | None = None,
    rlc_list: str | None = None,
) -> str:
    """The default policy with a few knobs changed."""
    text = DEFAULT_POLICY
    if batch_size is not None:
        text = text.replace("batch_size = 250", f"batch_size = {batch_size}", 1)
    if lease is not None:
        text = text.replace('lease = "15m"', f'lease = "{lease}"')
    if mode is not None:
        text = text.replace('mode = "local"', f'mode = "{mode}"')
    if rlc_list is not None:
        text = text.replace('rlc_list = "md:rlc:jobs"', f'rlc_list = "{rlc_list}"')
    return text


async def _prepare_database(dsn: str) -> None:
    await db.ensure_database(dsn)
    conn = await db.connect(dsn)
    try:
        s = get_settings()
        await db.apply_migrations(conn, s.sql_dir)
        await upsert_universe(conn, load_seed(s.include_dir / "universe.csv"))
        await store_initial_policy(conn, load_policy_file(s.policy_file), actor="fault tests")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private Postgres with the market_data database migrated and seeded (universe, policy v1)."""
    pg = PrivatePostgres()
    try:
        pg.initdb()
        pg.start()
        asyncio.run(_prepare_database(pg.dsn("market_data")))
        yield pg
    finally:
        pg.remove()


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    """A private Redis with an append-only file, so a killed Redis comes back with its lists."""
    r = PrivateRedis(appendonly=True)
    try:
        r.start()
        yield r
    finally:
        r.remove()


@pytest.fixture
async def pg(private_pg: PrivatePostgres) -> AsyncIterator[PrivatePostgres]:
    """The private Postgres, running, with empty data tables."""
    private_pg.start()
    conn = await asyncpg.connect(private_pg.dsn("market_data"))
    try:
        await conn.execute(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    yield private_pg
    private_pg.start()


@pytest.fixture
async def redis_server(private_redis: PrivateRedis) -> AsyncIterator[PrivateRedis]:
    """The private Redis, running and empty."""
    private_redis.start()
    client = aioredis.from_url(private_redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    yield private_redis
    private_redis.start()


def market_dsn(pg: PrivatePostgres) -> str:
    return pg.dsn("market_data")


def start_worker(
    command: str, spec: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A task process (tests/faults/worker.py) running one batch described by `spec`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker", command, json.dumps(spec, default=str)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_worker(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, Any, str]:
    """(exit code, the printed result or None, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    result = None
    if proc.returncode == 0:
        result = json.loads(out.strip().splitlines()[-1])
    return proc.returncode, result, err


def run_worker(command: str, spec: dict[str, Any], timeout: float = 120) -> Any:
    code, result, err = finish_worker(start_worker(command, spec), timeout)
    assert code == 0, err[-3000:]
    return result


async def wait_for(check: Any, within: float, what: str, interval: float = 0.05) -> Any:
    """Poll an async `check()` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


async def backend_waiting_on_lock(conn: asyncpg.Connection, query_like: str) -> int | None:
    """Pid of a backend blocked on a lock while running a statement matching `query_like`."""
    pid = await conn.fetchval(
        """SELECT pid FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND state = 'active' AND query ILIKE $1 AND pid <> pg_backend_pid()
           LIMIT 1""",
        query_like,
    )
    return None if pid is None else int(pid)


async def integrity(dsn: str) -> IntegrityReport:
    conn = await asyncpg.connect(dsn)
    try:
        return await run_integrity_checks(conn)
    finally:
        await conn.close()


async def assert_integrity(dsn: str) -> IntegrityReport:
    report = await integrity(dsn)
    failed = [c for c in report.checks if c.status == "failed"]
    assert not failed, report.text()
    return report


def exception_text(stderr: str) -> str:
    """The last line of a traceback (the exception a failed task reports)."""
    lines = [line for line in stderr.strip().splitlines() if re.match(r"^[\w.]+(Error|Exception)", line)]
    return lines[-1] if lines else stderr.strip()[-300:]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
