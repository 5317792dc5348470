"""SQL of /stats/* beyond what the core package's functions read."""

from __future__ import annotations

import asyncpg

ACTIVE_SYMBOLS_PER_TIER = "SELECT tier, count(*) FROM symbol_universe WHERE active GROUP BY tier"


async def active_symbols_per_tier(db: asyncpg.Pool) -> dict[str, int]:
    """tier -> active symbols; tiers without any are left out."""
    return dict(await db.fetch(ACTIVE_SYMBOLS_PER_TIER))
