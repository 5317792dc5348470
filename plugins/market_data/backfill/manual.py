"""Manual backfills (a DAG trigger's conf, or POST /ops/backfill): checked against the policy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec

from market_data.backfill.enqueue import BackfillRange, EnqueueResult, Source, enqueue_backfills
from market_data.policy.loader import Problem
from market_data.policy.schema import Policy
from market_data.records import Interval, Symbol, Tier

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_SYMBOLS = 100


class ManualBackfill(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)]
    interval: Interval
    start: AwareDatetime
    end: AwareDatetime


# ISO 8601 with a UTC offset; jsonschema's "format": "date-time" is not checked without an
# extra package, so the pattern does the refusing at trigger time.
ISO_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


def check_manual(req: ManualBackfill, policy: Policy, now: datetime, known: dict[str, str]) -> list[Problem]:
    """Range and symbol rules beyond the schema: every problem at once.

    Args:
        known: symbol -> tier of the active universe.
    """
    problems = []
    if req.end <= req.start:
        problems.append(Problem("end", "must be after start"))
    if req.end > now:
        problems.append(Problem("end", "is in the future"))
    if req.end - req.start > policy.backfill.max_range.delta:
        problems.append(
            Problem("end", f"the range is longer than backfill.max_range ({policy.backfill.max_range.text})")
        )
    if req.start < now - policy.backfill.max_age.delta:
        problems.append(Problem("start", f"is older than backfill.max_age ({policy.backfill.max_age.text})"))
    unknown = [s for s in req.symbols if s not in known]
    if unknown:
        problems.append(Problem("symbols", f"not in the active universe: {', '.join(unknown)}"))
    return problems


async def enqueue_manual(
    conn: asyncpg.Connection,
    req: ManualBackfill,
    policy: Policy,
    *,
    source: Source,
    policy_version: int | None,
) -> EnqueueResult:
    """Queue a checked manual request with the manual (most urgent) priority."""
    tiers = dict(
        await conn.fetch(
            "SELECT symbol, tier FROM symbol_universe WHERE symbol = ANY($1::text[])", list(req.symbols)
        )
    )
    ranges = [
        BackfillRange(
            symbol=s, interval=req.interval, start=req.start, end=req.end, tier=Tier(tiers[s]), source=source
        )
        for s in dict.fromkeys(req.symbols)
    ]
    return await enqueue_backfills(conn, ranges, policy, policy_version=policy_version)


async def active_universe(conn: asyncpg.Connection) -> dict[str, str]:
    return dict(await conn.fetch("SELECT symbol, tier FROM symbol_universe WHERE active"))
