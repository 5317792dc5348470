"""Test harness shared by every suite.

Each pytest run works only on things it creates: a market-data database and an Airflow
metadata database named after the run, a Redis key prefix, and a temporary AIRFLOW_HOME.
The environment is set here, at import time, before anything imports Airflow.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = os.environ.get("MD_TEST_RUN_ID") or f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
_BASE_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_BASE_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _dsn(db: str) -> str:
    p = urlsplit(_BASE_DSN)
    return f"{p.scheme}://{p.netloc}/{db}"


MD_DB = f"md_test_{RUN_ID}".lower()
AF_DB = f"md_test_{RUN_ID}_airflow".lower()
MD_DSN = _dsn(MD_DB)
AF_DSN = _dsn(AF_DB)
REDIS_PREFIX = f"mdtest:{RUN_ID}:"
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix=f"md_airflow_{RUN_ID}_"))


def _conn_json(dsn: str) -> str:
    p = urlsplit(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": p.hostname or "127.0.0.1",
            "port": p.port or 5432,
            "login": p.username or "postgres",
            "password": p.password or "",
            "schema": p.path.lstrip("/"),
        }
    )


def _redis_conn_json(url: str) -> str:
    p = urlsplit(url)
    return json.dumps(
        {
            "conn_type": "redis",
            "host": p.hostname or "127.0.0.1",
            "port": p.port or 6379,
            "password": p.password or "",
            "extra": {"db": int((p.path or "/0").lstrip("/") or 0)},
        }
    )


TEST_ENV = {
    "DATABASE_URL": MD_DSN,
    "REDIS_URL": _BASE_REDIS,
    "MARKET_DATA_REDIS_PREFIX": REDIS_PREFIX,
    "MARKET_DATA_OPS_TOKEN": "test-ops-token-" + RUN_ID,
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": AF_DSN.replace("postgresql://", "postgresql+psycopg2://", 1),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW__API_AUTH__JWT_SECRET": "test-jwt-secret-" + RUN_ID,
    "AIRFLOW__API__SECRET_KEY": "test-api-secret-" + RUN_ID,
    "AIRFLOW__METRICS__STATSD_ON": "False",
    "AIRFLOW_CONN_MARKET_DATA_DB": _conn_json(MD_DSN),
    "AIRFLOW_CONN_MARKET_DATA_REDIS": _redis_conn_json(_BASE_REDIS),
    "STATSD_HOST": "127.0.0.1",
    "STATSD_PORT": "9",  # discard port: nothing listens unless a test starts a receiver
}
os.environ.update(TEST_ENV)


async def _create_market_data_db() -> None:
    from market_data import db
    from market_data.policy import load_policy_file
    from market_data.policy.store import store_initial_policy
    from market_data.settings import get_settings
    from market_data.universe import load_seed, upsert_universe

    await db.drop_database(MD_DSN)
    await db.ensure_database(MD_DSN)
    conn = await db.connect(MD_DSN)
    try:
        s = get_settings()
        await db.apply_migrations(conn, s.sql_dir)
        await upsert_universe(conn, load_seed(s.include_dir / "universe.csv"))
        await store_initial_policy(conn, load_policy_file(s.policy_file), actor="tests")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def md_dsn() -> Iterator[str]:
    """The run's market-data database: migrated, seeded with the universe and policy v1."""
    from market_data import db

    asyncio.run(_create_market_data_db())
    yield MD_DSN
    asyncio.run(db.drop_database(MD_DSN))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """The run's Airflow metadata database, migrated with `airflow db migrate`."""
    from market_data import db

    asyncio.run(db.drop_database(AF_DSN))
    asyncio.run(db.ensure_database(AF_DSN))
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield AF_DSN
    try:
        from airflow.settings import dispose_orm

        dispose_orm()
    except Exception:
        pass
    asyncio.run(db.drop_database(AF_DSN))


CLEAN_TABLES = (
    "bars",
    "quotes",
    "ingestion_cursors",
    "confirmed_empty_ranges",
    "backfill_jobs",
    "backfill_requests",
    "backfill_request_jobs",
    "slo_samples",
    "rejected_jobs",
    "backfill_batch_runs",
    "ops_audit",
    "corporate_actions",
)


async def truncate_data(dsn: str) -> None:
    from market_data import db

    conn = await db.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
async def conn(md_dsn: str) -> AsyncIterator[object]:
    """A connection to the run's database, with the data tables emptied first."""
    from market_data import db

    await truncate_data(md_dsn)
    c = await db.connect(md_dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def restore_default_policy(md_dsn: str) -> AsyncIterator[None]:
    """After the test, the policy file is the active version again (for tests that reload)."""
    yield
    from market_data import db
    from market_data.policy.store import reload_policy
    from market_data.settings import get_settings

    c = await db.connect(md_dsn)
    try:
        await reload_policy(c, get_settings().policy_file.read_text(), actor="tests")
    finally:
        await c.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[object]:
    """Redis client; every key under the run's prefix is deleted afterwards."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(_BASE_REDIS)
    try:
        yield r
    finally:
        keys = [k async for k in r.scan_iter(match=REDIS_PREFIX + "*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
