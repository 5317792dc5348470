"""docker-compose.yaml runs the Postgres and Redis versions the tests run against.

The compose images carry this project to other machines; a major Postgres version (or a Redis
minor release) the suite never ran on is a change to make on purpose, with the test suite run
against it, not a drift.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
import yaml

from tests.conftest import TEST_ENV

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"
SERVICES = yaml.safe_load(COMPOSE.read_text())["services"]


async def test_the_compose_postgres_is_the_major_version_the_tests_run_on(md_dsn: str) -> None:
    conn = await asyncpg.connect(md_dsn)
    try:
        tested = int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()
    assert SERVICES["postgres"]["image"] == f"postgres:{tested}"


async def test_the_compose_redis_is_the_release_the_tests_run_on() -> None:
    r = aioredis.from_url(TEST_ENV["REDIS_URL"])
    try:
        version = (await r.info("server"))["redis_version"]
    finally:
        await r.aclose()
    major, minor = str(version).split(".")[:2]
    assert SERVICES["redis"]["image"] == f"redis:{major}.{minor}"
