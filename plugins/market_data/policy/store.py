"""Policy versions in Postgres: store, activate (one transaction), list, roll back."""

from __future__ import annotations

import asyncpg

from market_data.policy.loader import LoadedPolicy, policy_checksum


async def store_initial_policy(conn: asyncpg.Connection, loaded: LoadedPolicy, *, actor: str) -> str:
    """Make the policy file the active version when no version is active yet."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
        active = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
        if active is not None:
            return f"policy: version {active} is active"
        version = max(loaded.version, (await conn.fetchval("SELECT max(version) FROM policy_versions")) or 0)
        await conn.execute(
            """INSERT INTO policy_versions
                   (version, body, checksum, created_by, active, activated_at, activated_by)
               VALUES ($1, $2, $3, $4, true, now(), $4)
               ON CONFLICT (version) DO UPDATE SET active = true, activated_at = now(), activated_by = $4""",
            version,
            loaded.body,
            policy_checksum(loaded.body),
            actor,
        )
    return f"policy: stored {loaded.source} as version {version} (active)"
