"""Backfill enqueue: ranges in, coalesced queued jobs out, within per-tier caps.

New ranges merge with each other and with queued jobs of the same symbol and interval when
they overlap or touch; the merged job keeps the oldest id and creation time (its age is the
gap's age) and the most urgent priority. Beyond a tier's cap new ranges are refused: counted
and logged once per call, never raised, so a gap storm degrades into a bounded queue.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from market_data.backfill.requests import hand_over_links
from market_data.metrics import task_metrics
from market_data.policy.schema import Policy
from market_data.records import Interval, Tier

log = logging.getLogger(__name__)
_ENQUEUE_LOCK = 0x6D645F656E71  # 'md_enq': enqueuers take turns (claims are never blocked)

Source = Literal["gap", "manual", "api"]


class BackfillRange(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    interval: Interval
    start: datetime
    end: datetime
    tier: Tier
    source: Source = "gap"


class EnqueueResult(msgspec.Struct, kw_only=True):
    inserted: int = 0
    merged: int = 0
    """Ranges absorbed into an existing queued job (or into another new range)."""
    refused: dict[str, int] = {}
    """Ranges refused per tier because the tier's queue is at its cap."""
    job_ids: list[int] = []
    """Ids of the queued jobs that now cover the ranges."""

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def priority_of(policy: Policy, tier: Tier, source: Source) -> int:
    p = policy.backfill.priorities
    return p["manual"] if source in ("manual", "api") else p[tier.value]


def _coalesce(
    spans: list[tuple[datetime, datetime, int, object]],
) -> list[list[tuple[datetime, datetime, int, object]]]:
    """Group (start, end, priority, tag) spans that overlap or touch; input sorted by start."""
    groups: list[list[tuple[datetime, datetime, int, object]]] = []
    end: datetime | None = None
    for span in spans:
        if end is not None and span[0] <= end:
            groups[-1].append(span)
            end = max(end, span[1])
        else:
            groups.append([span])
            end = span[1]
    return groups


async def enqueue_backfills(
    conn: asyncpg.Connection,
    ranges: list[BackfillRange],
    policy: Policy,
    *,
    policy_version: int | None = None,
) -> EnqueueResult:
    """Queue backfill jobs for `ranges` in one transaction (see module docstring)."""
    result = EnqueueResult()
    if not ranges:
        return result
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ENQUEUE_LOCK)
        queued = dict(
            await conn.fetch("SELECT tier, count(*) FROM backfill_jobs WHERE status = 'queued' GROUP BY tier")
        )
        pairs = sorted({(r.symbol, r.interval.value) for r in ranges})
        lo, hi = min(r.start for r in ranges), max(r.end for r in ranges)
        existing = await conn.fetch(
            """SELECT id, symbol, interval, start_ts, end_ts, priority, tier FROM backfill_jobs
               WHERE status = 'queued'
                 AND (symbol, interval) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                 AND end_ts >= $3 AND start_ts <= $4
               ORDER BY id
               FOR UPDATE SKIP LOCKED""",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            lo,
            hi,
        )
        spans: dict[tuple[str, str], list[tuple[datetime, datetime, int, object]]] = defaultdict(list)
        tiers: dict[tuple[str, str], Tier] = {}
        for r in ranges:
            key = (r.symbol, r.interval.value)
            spans[key].append((r.start, r.end, priority_of(policy, r.tier, r.source), r))
            tiers.setdefault(key, r.tier)
        for row in existing:
            spans[(row["symbol"], row["interval"])].append(
                (row["start_ts"], row["end_ts"], row["priority"], row)
            )

        accepted: dict[str, int] = defaultdict(int)
        """Ranges queued (new jobs or merged into queued ones) per tier."""
        updates: list[tuple[int, datetime, datetime, int]] = []
        absorbed_by: dict[int, int] = {}
        """Queued jobs merged into another one: id -> the id that absorbs them."""
        inserts: list[tuple[object, ...]] = []
        for key, items in spans.items():
            for group in _coalesce(sorted(items, key=lambda s: (s[0], s[1]))):
                start, end = min(s[0] for s in group), max(s[1] for s in group)
                priority = min(s[2] for s in group)
                rows = [s[3] for s in group if isinstance(s[3], asyncpg.Record)]
                new = [s[3] for s in group if isinstance(s[3], BackfillRange)]
                if not new:
                    continue  # existing jobs only: nothing asked of them
                if rows:
                    keep, *absorbed = sorted(rows, key=lambda r: r["id"])
                    updates.append((keep["id"], start, end, priority))
                    absorbed_by.update((r["id"], keep["id"]) for r in absorbed)
                    result.merged += len(new)
                    result.job_ids.append(keep["id"])
                    accepted[tiers[key].value] += len(new)
                    continue
                tier = tiers[key]
                cap = policy.backfill.caps.get(tier, 0)
                if queued.get(tier.value, 0) >= cap:
                    result.refused[tier.value] = result.refused.get(tier.value, 0) + len(new)
                    continue
                queued[tier.value] = queued.get(tier.value, 0) + 1
                result.merged += len(new) - 1
                accepted[tier.value] += len(new)
                source = "manual" if any(n.source == "manual" for n in new) else new[0].source
                inserts.append((key[0], key[1], start, end, tier.value, priority, source, policy_version))
        if updates:
            await conn.executemany(
                """UPDATE backfill_jobs SET start_ts = $2, end_ts = $3, priority = LEAST(priority, $4),
                       updated_at = now() WHERE id = $1""",
                updates,
            )
        if absorbed_by:
            await hand_over_links(conn, absorbed_by)  # the requests they served follow the merge
            await conn.execute("DELETE FROM backfill_jobs WHERE id = ANY($1::bigint[])", list(absorbed_by))
        if inserts:
            ids = await conn.fetch(
                """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source,
                                              policy_version)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                        $5::text[], $6::int[], $7::text[], $8::int[])
                   RETURNING id""",
                *[list(col) for col in zip(*inserts, strict=True)],
            )
            result.job_ids.extend(r["id"] for r in ids)
        result.inserted = len(inserts)
    metrics = task_metrics()
    for tier_name, n in accepted.items():
        metrics.incr("backfill_jobs_enqueued_total", {"tier": tier_name}, n)
    for tier_name, n in result.refused.items():
        metrics.incr("jobs_rejected_total", {"reason": f"backfill_cap_{tier_name}"}, n)
        log.warning(
            "backfill queue of %s is at its cap (%d queued): %d range(s) refused",
            tier_name,
            policy.backfill.caps.get(Tier(tier_name), 0),
            n,
        )
    return result
