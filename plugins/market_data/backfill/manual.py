"""Manual backfills (a DAG trigger's conf, or POST /ops/backfill): checked against the policy, queued
as a backfill request (`market_data.backfill.requests`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec

from market_data.backfill.enqueue import BackfillRange, EnqueueResult, enqueue_backfills
from market_data.backfill.requests import RequestSource, create_request
from market_data.policy.loader import LoadedPolicy, Problem
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
    max_range = policy.backfill.max_range_for(req.interval)
    if req.end - req.start > max_range.delta:
        problems.append(
            Problem(
                "end",
                f"the range is longer than backfill.max_range for {req.interval.value} bars "
                f"({max_range.text})",
            )
        )
    max_age = policy.backfill.max_age_for(req.interval)
    if req.start < now - max_age.delta:
        problems.append(
            Problem("start", f"is older than backfill.max_age for {req.interval.value} bars ({max_age.text})")
        )
    unknown = [s for s in req.symbols if s not in known]
    if unknown:
        problems.append(Problem("symbols", f"not in the active universe: {', '.join(unknown)}"))
    return problems


class ManualBackfillRefused(msgspec.Struct, frozen=True):
    """A manual request the policy refuses: every reason at once (nothing is queued)."""

    problems: list[Problem]

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems)


TRIGGER_REFUSAL = "md_backfill conf refused"


def trigger_refusal(reason: object) -> str:
    """The message of a refused md_backfill trigger: the same at trigger time and in the task log."""
    return f"{TRIGGER_REFUSAL}: {reason}"


class QueuedRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted manual request: its id (GET /ops/backfills/{id}) and what enqueue did."""

    request_id: int
    enqueued: EnqueueResult


async def submit_manual_backfill(
    conn: asyncpg.Connection,
    req: ManualBackfill,
    loaded: LoadedPolicy,
    now: datetime,
    *,
    source: RequestSource,
    actor: str,
    dag_run_id: str | None = None,
) -> QueuedRequest | ManualBackfillRefused:
    """Check a manual request against the active policy and universe, then queue it.

    The one path of a DAG trigger's conf and of POST /ops/backfill: each caller only turns a
    refusal into its own form (a refused trigger, a 422). Queued with the manual (most
    urgent) priority, one range per distinct symbol, and recorded as a backfill request
    linked to the jobs that now cover it, in one transaction.
    """
    known = await active_universe(conn)
    problems = check_manual(req, loaded.policy, now, known)
    if problems:
        return ManualBackfillRefused(problems)
    ranges = [
        BackfillRange(
            symbol=s, interval=req.interval, start=req.start, end=req.end, tier=Tier(known[s]), source=source
        )
        for s in dict.fromkeys(req.symbols)
    ]
    async with conn.transaction():
        enqueued = await enqueue_backfills(conn, ranges, loaded.policy, policy_version=loaded.version)
        request_id = await create_request(
            conn,
            symbols=list(dict.fromkeys(req.symbols)),
            interval=req.interval,
            start=req.start,
            end=req.end,
            source=source,
            actor=actor,
            dag_run_id=dag_run_id,
            policy_version=loaded.version,
            enqueued=enqueued,
        )
    return QueuedRequest(request_id=request_id, enqueued=enqueued)


async def active_universe(conn: asyncpg.Connection) -> dict[str, str]:
    """symbol -> tier of the active universe."""
    return dict(await conn.fetch("SELECT symbol, tier FROM symbol_universe WHERE active"))
