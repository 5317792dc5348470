"""asyncpg helpers, the one blocking connection (for timetables), and the migration runner.

Migrations are `sql/NNN_name.sql`, applied in order, each in its own transaction and
recorded in `schema_migrations` with a SHA-256 checksum. An applied file that was edited
(or deleted) stops the runner: migrations are forward-only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_MIGRATION_RE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x6D645F6D6967  # 'md_mig': one runner at a time per database
BLOCKING_CONNECT_TIMEOUT = 3

BROKEN_CONNECTION = "cannot switch to state"
"""How asyncpg words an InternalClientError of a pooled connection whose backend was terminated
while it sat idle (a Postgres restart, `pg_terminate_backend`, a standby killed): the server's
goodbye is read in the middle of the next query. Found by `./dev soak`."""


def is_broken_connection(exc: BaseException) -> bool:
    """Whether `exc` is asyncpg's client error of a connection whose server went away."""
    return isinstance(exc, asyncpg.exceptions.InternalClientError) and BROKEN_CONNECTION in str(exc)


"""Seconds a blocking caller (the scheduler loop) waits for Postgres before falling back."""


class MigrationError(RuntimeError):
    """The migrations folder or the database's record of it is inconsistent."""


class MigrationChecksumError(MigrationError):
    """An applied migration file was changed after it was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover_migrations(sql_dir: Path) -> list[Migration]:
    """Every `NNN_name.sql` in `sql_dir`, ordered; other files are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNN_lowercase_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} also used by {found[version].path.name}")
        found[version] = Migration(version, m.group(2), path, path.read_text())
    return [found[v] for v in sorted(found)]


async def apply_migrations(conn: asyncpg.Connection, sql_dir: Path) -> list[str]:
    """Apply pending migrations; returns the file names applied now.

    Raises:
        MigrationChecksumError: an applied file was edited or removed.
    """
    migrations = discover_migrations(sql_dir)
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        by_version = {m.version: m for m in migrations}
        for version, row in sorted(applied.items()):
            m = by_version.get(version)
            if m is None:
                raise MigrationChecksumError(
                    f"migration {version:03d}_{row['name']}.sql was applied but its file is gone"
                )
            if m.checksum != row["checksum"]:
                raise MigrationChecksumError(
                    f"{m.path.name} was edited after it was applied (checksum {row['checksum'][:12]}… "
                    f"in the database, {m.checksum[:12]}… on disk); add a new migration instead"
                )
        done: list[str] = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done.append(m.path.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def pending_migrations(conn: asyncpg.Connection, sql_dir: Path) -> list[str]:
    """File names of the migrations not applied yet (all of them on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")} if exists else set()
    return [m.path.name for m in discover_migrations(sql_dir) if m.version not in applied]


def dsn_database(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _quote_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
    return f'"{name}"'


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database if missing (connecting to `postgres`); True if created."""
    name = dsn_database(dsn)
    admin = await asyncpg.connect(dsn_with_database(dsn, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await admin.execute(f"CREATE DATABASE {_quote_ident(name)}")
        return True
    finally:
        await admin.close()


async def drop_database(dsn: str) -> None:
    """Drop the DSN's database (used by tests on the databases they created)."""
    name = dsn_database(dsn)
    admin = await asyncpg.connect(dsn_with_database(dsn, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, command_timeout=300)


@contextmanager
def connect_blocking(dsn: str) -> Iterator[Any]:
    """A psycopg2 connection for code that cannot await (the scheduler's timetables), closed on exit.

    psycopg2 is imported here, not at the top: only the scheduler needs it.
    """
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=BLOCKING_CONNECT_TIMEOUT)
    try:
        yield conn
    finally:
        conn.close()
