"""Monthly partitions of `bars` and `quotes`: created ahead (and back), and compacted after.

- **Created**: every month a backfill of intraday bars may still write (the longest intraday
  `backfill.max_age` back; older daily bars go to the default partition) and
  `retention.partitions_ahead` months ahead get their partition, so no bar lands in the
  default partition (which range pruning cannot skip and which blocks creating the month's
  partition later). Quotes only ahead: a quote older than `retention.quotes` is purged.
- **Compacted**: sweeps store bars minute by minute across every symbol, so one symbol's
  session is spread over hundreds of heap pages. Once a month has ended (`COMPACT_AFTER`),
  its partition is rewritten in primary-key order (`md_compact_bar_partition`, migration
  006: a sorted copy swapped in, readers never blocked for long), so a day of any month reads
  a few consecutive pages and reads stay flat as `bars` grows. A compacted partition that has
  grown by more than `RECOMPACT_GROWTH` since (late backfills, corrections) is compacted again.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import asyncpg
import msgspec

from market_data.policy.schema import Policy

log = logging.getLogger(__name__)

COMPACT_AFTER = timedelta(days=1)
"""A month's partition is compacted once the month has been over this long."""
COMPACT_PER_RUN = 2
"""Partitions compacted by one maintenance run at most (oldest first): a first run after a
long backfill spreads the work over several days."""
RECOMPACT_GROWTH = 0.10

_ENSURE_MONTH = """
SELECT md_ensure_month_partitions($1, (date_trunc('month', now()) + make_interval(months => $2))::date, 1)"""

_CLOSED_BAR_PARTITIONS = r"""
SELECT c.relname AS name, c.reltuples::int8 AS rows, pg_relation_size(c.oid) AS bytes,
       obj_description(c.oid, 'pg_class') AS note
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'bars'::regclass
  AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
  AND substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$TO \('([^']+)'\)$re$)::timestamptz
      <= now() - $1::interval
ORDER BY c.relname"""

_COMPACT = "SELECT md_compact_bar_partition($1)"
_COMPACTED_ROWS = re.compile(r"^md:compacted rows=(\d+)")


class PartitionReport(msgspec.Struct, kw_only=True):
    created: dict[str, int] = {}
    """table -> partitions created."""
    compacted: dict[str, int] = {}
    """partition -> rows rewritten in primary-key order."""
    errors: dict[str, str] = {}
    """`table:+months` (creation) or `compact:partition` -> the error."""


async def ensure_partitions(conn: asyncpg.Connection, policy: Policy, report: PartitionReport) -> None:
    """Every month's partition from the longest intraday `backfill.max_age` back (bars) to
    `partitions_ahead` ahead; older daily bars (backfilled up to their own, longer `max_age`)
    land in the default partition (about 250 rows per symbol and year).

    One month per statement: a month whose rows already sit in the default partition fails
    alone (its error is reported) and the others are created.
    """
    months_back = {"bars": int(policy.backfill.intraday_max_age.seconds // (31 * 86_400)) + 1, "quotes": 0}
    for table, back in months_back.items():
        created = 0
        for offset in range(-back, policy.retention.partitions_ahead + 1):
            try:
                created += await conn.fetchval(_ENSURE_MONTH, table, offset)
            except asyncpg.PostgresError as exc:
                report.errors[f"{table}:{offset:+d}"] = str(exc)
                log.error("could not create the %s partition %+d months from now: %s", table, offset, exc)
        report.created[table] = created


def needs_compaction(rows: int, note: str | None) -> bool:
    """A closed month's partition with rows that was never compacted, or has grown since."""
    if rows == 0:
        return False
    m = _COMPACTED_ROWS.match(note or "")
    if m is None:
        return True
    return rows > int(m.group(1)) * (1 + RECOMPACT_GROWTH)


async def due_for_compaction(conn: asyncpg.Connection, after: timedelta = COMPACT_AFTER) -> list[str]:
    """Bar partitions whose month ended at least `after` ago and that need compaction, oldest first."""
    out = []
    for r in await conn.fetch(_CLOSED_BAR_PARTITIONS, after):
        if r["bytes"] == 0:  # never written
            continue
        # reltuples is -1 until the partition is first vacuumed or analyzed: rows, how many unknown
        if needs_compaction(r["rows"] if r["rows"] >= 0 else 1, r["note"]) or r["rows"] < 0:
            out.append(r["name"])
    return out


async def compact(conn: asyncpg.Connection, partition: str) -> int:
    """Rewrite one bar partition in primary-key order; the rows it holds."""
    return int(await conn.fetchval(_COMPACT, partition))


async def compact_due(
    conn: asyncpg.Connection, report: PartitionReport, limit: int = COMPACT_PER_RUN
) -> None:
    for name in (await due_for_compaction(conn))[:limit]:
        try:
            report.compacted[name] = await compact(conn, name)
            log.info("compacted %s: %d rows in primary-key order", name, report.compacted[name])
        except asyncpg.PostgresError as exc:
            report.errors[f"compact:{name}"] = str(exc)
            log.error("could not compact %s: %s", name, exc)
