"""Policy versions in Postgres: store and activate in one transaction, list, roll back.

Versions are numbered by the server and only ever added: a rollback stores the earlier
body again as a new version, so every version a DAG run recorded means one thing forever.
Activation notifies `md_policy` so API processes pick the new version up at once (reader.py).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from market_data.notifications import POLICY_CHANNEL
from market_data.policy.loader import LoadedPolicy, PolicyError, Problem, policy_checksum
from market_data.policy.validation import checked_policy


class PolicyConflict(Exception):
    """The active version is not the one the caller expected (someone reloaded first)."""

    def __init__(self, expected: int, active: int | None) -> None:
        super().__init__(f"expected active version {expected}, but the active version is {active}")
        self.expected = expected
        self.active = active


class PolicyVersionNotFound(PolicyError):
    """A rollback named a version that is not stored."""

    def __init__(self, version: int) -> None:
        super().__init__([Problem("version", f"version {version} is not stored")])
        self.version = version


class PolicyVersion(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    checksum: str
    created_at: datetime
    created_by: str
    active: bool
    activated_at: datetime | None
    activated_by: str | None
    note: str | None


_COLUMNS = "version, checksum, created_at, created_by, active, activated_at, activated_by, note"


def _version(row: asyncpg.Record) -> PolicyVersion:
    return PolicyVersion(**{k: row[k] for k in _COLUMNS.split(", ")})


async def _activate_new(
    conn: asyncpg.Connection, body: str, actor: str, note: str | None, expected_active: int | None
) -> tuple[PolicyVersion, bool]:
    """Store `body` as the next version and make it active, in the caller's transaction.

    Returns (version, created); an identical body to the active one creates nothing.
    """
    # Writers queue here; readers (DAG runs, the API) are never blocked.
    await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
    active = await conn.fetchrow(f"SELECT {_COLUMNS} FROM policy_versions WHERE active")
    active_version = active["version"] if active else None
    if expected_active is not None and expected_active != active_version:
        raise PolicyConflict(expected_active, active_version)
    checksum = policy_checksum(body)
    if active is not None and active["checksum"] == checksum:
        return _version(active), False
    version = await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM policy_versions")
    await conn.execute("UPDATE policy_versions SET active = false WHERE active")
    row = await conn.fetchrow(
        f"""INSERT INTO policy_versions
                (version, body, checksum, created_by, active, activated_at, activated_by, note)
            VALUES ($1, $2, $3, $4, true, now(), $4, $5)
            RETURNING {_COLUMNS}""",
        version,
        body,
        checksum,
        actor,
        note,
    )
    await conn.execute("SELECT pg_notify($1, $2)", POLICY_CHANNEL, str(version))
    return _version(row), True


async def reload_policy(
    conn: asyncpg.Connection,
    body: str,
    *,
    actor: str,
    known_pools: set[str] | None = None,
    expected_active: int | None = None,
) -> tuple[PolicyVersion, bool]:
    """Validate, store as a new version and activate, atomically.

    Raises:
        PolicyError: the candidate is refused (nothing is stored).
        PolicyConflict: `expected_active` is given and another version is active.
    """
    checked_policy(body, known_pools)
    async with conn.transaction():
        return await _activate_new(conn, body, actor, None, expected_active)


async def rollback_policy(
    conn: asyncpg.Connection, version: int, *, actor: str, known_pools: set[str] | None = None
) -> tuple[PolicyVersion, bool]:
    """Activate the body of an earlier version again, as a new version.

    Raises:
        PolicyVersionNotFound: `version` is not stored.
        PolicyError: its body breaks today's rules (nothing is stored).
    """
    body = await conn.fetchval("SELECT body FROM policy_versions WHERE version = $1", version)
    if body is None:
        raise PolicyVersionNotFound(version)
    checked_policy(body, known_pools)  # rules may have tightened since it was stored
    async with conn.transaction():
        return await _activate_new(conn, body, actor, f"rollback to version {version}", None)


async def store_initial_policy(conn: asyncpg.Connection, loaded: LoadedPolicy, *, actor: str) -> str:
    """Make the policy file the active version when no version is stored yet."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
        active = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
        if active is not None:
            return f"policy: version {active} is active"
        stored, _ = await _activate_new(
            conn, loaded.body, actor, f"initial policy from {loaded.source}", None
        )
    return f"policy: stored {loaded.source} as version {stored.version} (active)"


async def list_versions(conn: asyncpg.Connection, limit: int = 100) -> list[PolicyVersion]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM policy_versions ORDER BY version DESC LIMIT $1", limit)
    return [_version(r) for r in rows]


async def active_version(conn: asyncpg.Connection) -> tuple[PolicyVersion, str] | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS}, body FROM policy_versions WHERE active")
    return (_version(row), row["body"]) if row else None


async def version_active_at(conn: asyncpg.Connection | asyncpg.Pool, at: datetime) -> int | None:
    """The version that was active at `at` (the last activated at or before it); None before any.

    Each version is activated once (a rollback stores a new one), so this never changes later.
    """
    version: int | None = await conn.fetchval(
        "SELECT version FROM policy_versions WHERE activated_at <= $1 ORDER BY activated_at DESC LIMIT 1",
        at,
    )
    return version
