"""What /metrics reads from Postgres on each scrape: queue depth and age per tier, active policy."""

from __future__ import annotations

from api.observability.metrics import ScrapeSource, ScrapeValues
from api.state import AppResources

QUEUE = """
SELECT tier, count(*) AS depth, extract(epoch FROM now() - min(created_at))::float8 AS oldest
FROM backfill_jobs WHERE status IN ('queued', 'running') GROUP BY tier"""

ACTIVE_POLICY = "SELECT version FROM policy_versions WHERE active ORDER BY version DESC LIMIT 1"


def scrape_source(resources: AppResources) -> ScrapeSource:
    """The ScrapeSource of an app: two small queries on one pooled connection."""

    async def read() -> ScrapeValues:
        async with resources.db.acquire() as conn:
            rows = await conn.fetch(QUEUE)
            version = await conn.fetchval(ACTIVE_POLICY)
        return ScrapeValues(
            backfill_queue_depth={r["tier"]: int(r["depth"]) for r in rows},
            backfill_oldest_age_seconds={r["tier"]: max(0.0, float(r["oldest"] or 0.0)) for r in rows},
            policy_version=int(version) if version is not None else None,
        )

    return read
