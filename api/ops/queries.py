"""SQL of /ops/* beyond what the core package's functions read (bound parameters only)."""

from __future__ import annotations

import asyncpg

from market_data.records import Interval

CURSOR = """
SELECT symbol, interval, provider AS source, last_ts, updated_at, policy_version FROM ingestion_cursors
WHERE symbol = $1 AND interval = $2 AND provider = $3"""


async def ingestion_cursor(
    db: asyncpg.Pool, symbol: str, interval: Interval, source: str
) -> asyncpg.Record | None:
    """The ingestion cursor of (symbol, interval, provider), or None."""
    return await db.fetchrow(CURSOR, symbol, interval.value, source)
