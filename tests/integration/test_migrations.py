"""The migration runner: ordered, recorded with checksums, refuses edited history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from market_data import db
from tests.conftest import MD_DB, _dsn


@pytest.fixture
async def scratch_dsn():
    dsn = _dsn(MD_DB + "_mig")
    await db.drop_database(dsn)
    await db.ensure_database(dsn)
    yield dsn
    await db.drop_database(dsn)


def write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


async def test_applies_in_order_once_and_records_checksums(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "001_first.sql", "CREATE TABLE a (x int);")
    write(tmp_path, "002_second.sql", "INSERT INTO a VALUES (1);")
    conn = await db.connect(scratch_dsn)
    try:
        assert await db.apply_migrations(conn, tmp_path) == ["001_first.sql", "002_second.sql"]
        assert await db.apply_migrations(conn, tmp_path) == []
        assert await conn.fetchval("SELECT count(*) FROM a") == 1
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [1, 2]
        assert all(len(r["checksum"]) == 64 for r in rows)
    finally:
        await conn.close()


async def test_refuses_to_run_when_an_applied_file_was_edited(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "001_first.sql", "CREATE TABLE a (x int);")
    conn = await db.connect(scratch_dsn)
    try:
        await db.apply_migrations(conn, tmp_path)
        write(tmp_path, "001_first.sql", "CREATE TABLE a (x int, y int);")
        write(tmp_path, "002_more.sql", "CREATE TABLE b (x int);")
        with pytest.raises(db.MigrationChecksumError, match=r"001_first\.sql was edited"):
            await db.apply_migrations(conn, tmp_path)
        # nothing after the refusal was applied
        assert await conn.fetchval("SELECT to_regclass('b')") is None
    finally:
        await conn.close()


async def test_refuses_when_an_applied_file_is_gone(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "001_first.sql", "CREATE TABLE a (x int);")
    conn = await db.connect(scratch_dsn)
    try:
        await db.apply_migrations(conn, tmp_path)
        (tmp_path / "001_first.sql").unlink()
        with pytest.raises(db.MigrationChecksumError, match="its file is gone"):
            await db.apply_migrations(conn, tmp_path)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "001_bad.sql", "CREATE TABLE a (x int); SELECT no_such_function();")
    conn = await db.connect(scratch_dsn)
    try:
        with pytest.raises(Exception, match="no_such_function"):
            await db.apply_migrations(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('a')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


def test_misnamed_files_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "1-first.sql", "SELECT 1;")
    with pytest.raises(db.MigrationError, match="NNN_lowercase_name"):
        db.discover_migrations(tmp_path)


SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


async def test_project_migrations_apply_to_an_empty_database(scratch_dsn: str, tmp_path: Path) -> None:
    shutil.copytree(SQL_DIR, tmp_path / "sql")
    conn = await db.connect(scratch_dsn)
    try:
        applied = await db.apply_migrations(conn, tmp_path / "sql")
        assert applied[0] == "001_core.sql"
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        for t in (
            "symbol_universe",
            "bars",
            "quotes",
            "ingestion_cursors",
            "backfill_jobs",
            "policy_versions",
            "slo_samples",
            "rejected_jobs",
            "confirmed_empty_ranges",
        ):
            assert t in tables
        assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'bars'") == "p"
    finally:
        await conn.close()
