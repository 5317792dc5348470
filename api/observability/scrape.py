"""What /metrics reads on each scrape: queue depth and age per tier, the active policy, and
whether each exchange of the active universe trades now (`market_open`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from api.observability.metrics import ScrapeSource, ScrapeValues
from api.state import AppResources
from market_data import calendar
from market_data.records import utcnow

log = logging.getLogger(__name__)

QUEUE = """
SELECT tier, count(*) AS depth, extract(epoch FROM now() - min(created_at))::float8 AS oldest
FROM backfill_jobs WHERE status IN ('queued', 'running') GROUP BY tier"""

ACTIVE_POLICY = "SELECT version FROM policy_versions WHERE active ORDER BY version DESC LIMIT 1"

ACTIVE_EXCHANGES = "SELECT DISTINCT exchange_mic FROM symbol_universe WHERE active ORDER BY 1"


def markets_open(mics: list[str], at: datetime) -> dict[str, bool]:
    """Whether each exchange trades at `at` (exchange-calendars); unknown MICs are left out."""
    out = {}
    for mic in mics:
        try:
            out[mic] = calendar.is_open_at(mic, at)
        except calendar.CalendarError as exc:
            log.warning("market_open: %s", exc)
    return out


def scrape_source(resources: AppResources) -> ScrapeSource:
    """The ScrapeSource of an app: three small queries on one pooled connection, and the
    calendars (in a thread: the first look at an exchange builds its session table)."""

    async def read() -> ScrapeValues:
        async with resources.db.acquire() as conn:
            rows = await conn.fetch(QUEUE)
            version = await conn.fetchval(ACTIVE_POLICY)
            mics = [r[0] for r in await conn.fetch(ACTIVE_EXCHANGES)]
        return ScrapeValues(
            backfill_queue_depth={r["tier"]: int(r["depth"]) for r in rows},
            backfill_oldest_age_seconds={r["tier"]: max(0.0, float(r["oldest"] or 0.0)) for r in rows},
            policy_version=int(version) if version is not None else None,
            market_open=await asyncio.to_thread(markets_open, mics, utcnow()),
        )

    return read
