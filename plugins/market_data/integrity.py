"""Integrity checks of the market-data store (`./dev integrity`; the fault tests run them too).

Each check returns a `CheckResult`: its name, `ok` / `failed` / `skipped` (with the reason),
how many rows it looked at, how many violate it, and a few examples. None of them changes
anything; they only read.

- bar_versions_unique: no (symbol, interval, ts, as_of) twice, and no version identical to
  the version before it (a re-delivered bar must add nothing).
- cursors_not_ahead: every ingestion cursor points at or before the newest stored bar of its
  symbol and interval (a cursor ahead of the data would hide a gap forever).
- job_states_consistent: every backfill job's fields agree with its status (a done job has
  finished and holds no lease; a queued one belongs to no run; a running one has a lease).
- done_ranges_not_requeued: no gap job was queued, after a backfill finished, for a range
  that finished job covers (the same work both done and queued again).
- dlq_matches_airflow: every dead job of a batch belongs to a mapped `backfill_<group>` task
  instance that failed in Airflow, and no failed batch still holds a running job. Airflow is
  asked through its public REST API v2 (`market_data.airflow_rest`, the service's own Airflow
  user); skipped, saying why, when it is not configured or not reachable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from market_data.airflow_rest import AirflowRest, AirflowUnavailable

log = logging.getLogger(__name__)

EXAMPLES = 5
"""Violations shown per check."""
BACKFILL_DAG = "md_backfill"
TASK_PREFIX = "backfill_"
IN_PROGRESS = (
    None,  # cleared, waiting for the scheduler
    "scheduled",
    "queued",
    "running",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
    "deferred",
)
"""Task instance states of a batch that is being run again (a cleared DLQ batch)."""
RUNS_PER_CALL = 50
"""Run ids per task-instance listing (the request body stays small)."""

Status = Literal["ok", "failed", "skipped"]


class CheckResult(msgspec.Struct, kw_only=True):
    name: str
    status: Status
    description: str
    checked: int = 0
    """Rows (or groups) looked at."""
    violations: int = 0
    examples: list[dict[str, Any]] = []
    detail: str = ""
    """Why a check was skipped, or notes on what it saw."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class IntegrityReport(msgspec.Struct, kw_only=True):
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        """No check failed (skipped checks are not failures, and are reported as skipped)."""
        return all(c.status != "failed" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def text(self) -> str:
        """A report for a terminal: one line per check, then its examples."""
        lines = []
        for c in self.checks:
            mark = {"ok": "ok     ", "failed": "FAILED ", "skipped": "skipped"}[c.status]
            counts = f"{c.violations} violation(s) in {c.checked} checked"
            lines.append(f"{mark} {c.name}: {counts if c.status != 'skipped' else c.detail}")
            if c.status != "skipped" and c.detail:
                lines.append(f"          {c.detail}")
            lines.extend(f"          e.g. {ex}" for ex in c.examples)
        lines.append("integrity: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def _result(
    name: str, description: str, checked: int, bad: Sequence[asyncpg.Record | dict[str, Any]], total: int
) -> CheckResult:
    return CheckResult(
        name=name,
        status="failed" if total else "ok",
        description=description,
        checked=checked,
        violations=total,
        examples=[_plain(dict(r)) for r in bad[:EXAMPLES]],
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


# A version identical to the one before it (same bar, next as_of): a re-delivery that added a row.
_REDUNDANT_VERSIONS = """
    WITH v AS (
        SELECT symbol, interval, ts, as_of,
               lag(as_of) OVER w AS previous_as_of,
               ROW(open, high, low, close, volume, vwap, trade_count, status)
                   IS NOT DISTINCT FROM
               lag(ROW(open, high, low, close, volume, vwap, trade_count, status)) OVER w AS same
        FROM bars WHERE $1::timestamptz IS NULL OR ts >= $1
        WINDOW w AS (PARTITION BY symbol, interval, ts ORDER BY as_of))
    SELECT symbol, interval, ts, as_of, previous_as_of FROM v
    WHERE previous_as_of IS NOT NULL AND same"""
_REDUNDANT_COUNT = "SELECT count(*) FROM (" + _REDUNDANT_VERSIONS + ") r"


async def check_bar_versions(conn: asyncpg.Connection, since: datetime | None = None) -> CheckResult:
    checked = await conn.fetchval(
        "SELECT count(*) FROM bars WHERE $1::timestamptz IS NULL OR ts >= $1", since
    )
    duplicates = await conn.fetch(
        """SELECT symbol, interval, ts, as_of, count(*) AS copies FROM bars
           WHERE $1::timestamptz IS NULL OR ts >= $1
           GROUP BY symbol, interval, ts, as_of HAVING count(*) > 1
           ORDER BY symbol, interval, ts LIMIT $2""",
        since,
        EXAMPLES,
    )
    n_duplicates = await conn.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM bars WHERE $1::timestamptz IS NULL OR ts >= $1
           GROUP BY symbol, interval, ts, as_of HAVING count(*) > 1) d""",
        since,
    )
    redundant = await conn.fetch(
        _REDUNDANT_VERSIONS + " ORDER BY symbol, interval, ts LIMIT $2", since, EXAMPLES
    )
    n_redundant = await conn.fetchval(_REDUNDANT_COUNT, since)
    examples = [{"kind": "duplicate key", **dict(r)} for r in duplicates] + [
        {"kind": "version identical to the previous one", **dict(r)} for r in redundant
    ]
    return _result(
        "bar_versions_unique",
        "no bar version stored twice, none identical to the version before it",
        checked,
        examples,
        n_duplicates + n_redundant,
    )


_CURSORS_NOT_AHEAD = """SELECT c.symbol, c.interval, c.provider, c.last_ts, m.newest_bar
           FROM ingestion_cursors c
           LEFT JOIN LATERAL (
               SELECT max(b.ts) AS newest_bar FROM bars b
               WHERE b.symbol = c.symbol AND b.interval = c.interval) m ON true
           WHERE m.newest_bar IS NULL OR m.newest_bar < c.last_ts
           ORDER BY c.symbol, c.interval, c.provider"""
_CURSORS_NOT_AHEAD_CHECKED = "SELECT count(*) FROM ingestion_cursors"

_JOB_STATES_CONSISTENT = """SELECT id, symbol, interval, status, run_id, batch, lease_until, finished_at,
                  CASE
                    WHEN status = 'done' AND finished_at IS NULL THEN 'done without finished_at'
                    WHEN status = 'done' AND lease_until IS NOT NULL THEN 'done but still leased'
                    WHEN status = 'queued' AND (run_id IS NOT NULL OR batch IS NOT NULL)
                        THEN 'queued but assigned to a run'
                    WHEN status = 'queued' AND lease_until IS NOT NULL THEN 'queued but leased'
                    WHEN status = 'queued' AND finished_at IS NOT NULL THEN 'queued but finished'
                    WHEN status = 'running' AND (run_id IS NULL OR lease_until IS NULL)
                        THEN 'running without a run or a lease'
                    WHEN status = 'dead' AND finished_at IS NULL THEN 'dead without finished_at'
                  END AS problem
           FROM backfill_jobs
           WHERE (status = 'done' AND (finished_at IS NULL OR lease_until IS NOT NULL))
              OR (status = 'queued' AND (run_id IS NOT NULL OR batch IS NOT NULL OR lease_until IS NOT NULL
                                         OR finished_at IS NOT NULL))
              OR (status = 'running' AND (run_id IS NULL OR lease_until IS NULL))
              OR (status = 'dead' AND finished_at IS NULL)
           ORDER BY id"""
_JOB_STATES_CONSISTENT_CHECKED = "SELECT count(*) FROM backfill_jobs"

_DONE_RANGES_NOT_REQUEUED = """
           SELECT q.id, q.symbol, q.interval, q.status, q.start_ts, q.end_ts, q.created_at,
                  d.id AS done_id, d.finished_at AS done_at
           FROM backfill_jobs q
           JOIN LATERAL (
               SELECT id, finished_at FROM backfill_jobs d
               WHERE d.status = 'done' AND d.symbol = q.symbol AND d.interval = q.interval
                 AND d.start_ts <= q.start_ts AND d.end_ts >= q.end_ts AND d.finished_at < q.created_at
               ORDER BY d.id LIMIT 1) d ON true
           WHERE q.status IN ('queued', 'running') AND q.source = 'gap'
           ORDER BY q.id"""
_DONE_RANGES_NOT_REQUEUED_CHECKED = "SELECT count(*) FROM backfill_jobs WHERE status IN ('queued', 'running')"


async def _query_check(
    conn: asyncpg.Connection, name: str, description: str, violations: list[asyncpg.Record], checked: int
) -> CheckResult:
    """A check whose violations are the rows of one query, out of the count of another."""
    return _result(name, description, checked, violations, len(violations))


async def check_cursors(conn: asyncpg.Connection) -> CheckResult:
    return await _query_check(
        conn,
        "cursors_not_ahead",
        "every ingestion cursor is at or before the newest stored bar of its symbol and interval",
        await conn.fetch(_CURSORS_NOT_AHEAD),
        await conn.fetchval(_CURSORS_NOT_AHEAD_CHECKED),
    )


async def check_job_states(conn: asyncpg.Connection) -> CheckResult:
    return await _query_check(
        conn,
        "job_states_consistent",
        "every backfill job's run, lease and finish time agree with its status",
        await conn.fetch(_JOB_STATES_CONSISTENT),
        await conn.fetchval(_JOB_STATES_CONSISTENT_CHECKED),
    )


async def check_done_not_requeued(conn: asyncpg.Connection) -> CheckResult:
    return await _query_check(
        conn,
        "done_ranges_not_requeued",
        "no gap job queued again for a range a finished backfill job covered",
        await conn.fetch(_DONE_RANGES_NOT_REQUEUED),
        await conn.fetchval(_DONE_RANGES_NOT_REQUEUED_CHECKED),
    )


async def _failed_batches(airflow: AirflowRest) -> list[tuple[str, str, int]]:
    """(run_id, task_id, map_index) of md_backfill's mapped batch task instances that failed."""
    return [
        (ti["dag_run_id"], ti["task_id"], int(ti["map_index"]))
        for ti in await airflow.task_instances(BACKFILL_DAG, states=["failed"])
        if ti["task_id"].startswith(TASK_PREFIX) and int(ti["map_index"]) >= 0
    ]


async def _batch_states(
    airflow: AirflowRest, keys: list[tuple[str, str, int]]
) -> dict[tuple[str, str, int], str | None]:
    """The state of each (run_id, task_id, map_index) task instance Airflow knows."""
    states: dict[tuple[str, str, int], str | None] = {}
    runs = sorted({k[0] for k in keys})
    tasks = sorted({k[1] for k in keys})
    for i in range(0, len(runs), RUNS_PER_CALL):
        for ti in await airflow.task_instances(
            BACKFILL_DAG, run_ids=runs[i : i + RUNS_PER_CALL], task_ids=tasks
        ):
            states[(ti["dag_run_id"], ti["task_id"], int(ti["map_index"]))] = ti["state"]
    return states


async def check_dlq(conn: asyncpg.Connection, airflow: AirflowRest | None) -> CheckResult:
    name = "dlq_matches_airflow"
    description = (
        "dead jobs belong to failed backfill task instances in Airflow, and no failed batch still holds "
        "a running job"
    )
    if airflow is None:
        return CheckResult(
            name=name,
            status="skipped",
            description=description,
            detail="Airflow's REST API is not configured (MD_AIRFLOW_API_URL)",
        )
    try:
        failed = await _failed_batches(airflow)
        dead = await conn.fetch(
            """SELECT run_id, batch, count(*) AS jobs, min(id) AS first_id FROM backfill_jobs
               WHERE status = 'dead' AND run_id IS NOT NULL AND batch IS NOT NULL
               GROUP BY run_id, batch ORDER BY run_id, batch"""
        )
        keys = []
        for r in dead:
            group, _, index = r["batch"].rpartition(":")
            keys.append((r["run_id"], TASK_PREFIX + group, int(index) if index.isdigit() else -2))
        states = await _batch_states(airflow, keys) if keys else {}
    except AirflowUnavailable as exc:
        return CheckResult(
            name=name,
            status="skipped",
            description=description,
            detail=f"Airflow's REST API ({airflow.describe()}) cannot be used: {exc}",
        )
    untied = await conn.fetchval(
        "SELECT count(*) FROM backfill_jobs WHERE status = 'dead' AND (run_id IS NULL OR batch IS NULL)"
    )
    bad: list[dict[str, Any]] = []
    rerunning = 0
    for r, key in zip(dead, keys, strict=True):
        state = states.get(key, "missing")
        if state == "failed":
            continue
        if state in IN_PROGRESS:
            rerunning += 1  # cleared in the UI: its jobs leave the DLQ when it runs
            continue
        bad.append(
            {
                "problem": "dead jobs whose task instance did not fail",
                "run_id": r["run_id"],
                "batch": r["batch"],
                "dead_jobs": r["jobs"],
                "task_instance_state": state,
            }
        )
    stuck: list[asyncpg.Record] = []
    if failed:
        stuck = await conn.fetch(
            """SELECT j.run_id, j.batch, count(*) AS running_jobs FROM backfill_jobs j
               JOIN unnest($1::text[], $2::text[]) AS f(run_id, batch)
                 ON j.run_id = f.run_id AND j.batch = f.batch
               WHERE j.status = 'running'
               GROUP BY j.run_id, j.batch""",
            [f[0] for f in failed],
            [f"{f[1].removeprefix(TASK_PREFIX)}:{f[2]}" for f in failed],
        )
    bad.extend({"problem": "failed batch still holds running jobs", **dict(s)} for s in stuck)
    result = _result(name, description, len(dead) + len(failed), bad, len(bad))
    notes = []
    if rerunning:
        notes.append(f"{rerunning} dead batch(es) are being run again (cleared task instances)")
    if untied:
        notes.append(f"{untied} dead job(s) no provider could serve (never part of a batch)")
    result.detail = "; ".join(notes)
    return result


async def run_integrity_checks(
    conn: asyncpg.Connection,
    *,
    airflow: AirflowRest | None = None,
    since: datetime | None = None,
) -> IntegrityReport:
    """Every check, in a read-only transaction (one consistent snapshot of the store).

    Args:
        airflow: Airflow's REST API (`AirflowRest.from_settings`); None skips the DLQ check.
        since: check bar versions with ts >= since only (the full table can be large).
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        checks = [
            await check_bar_versions(conn, since),
            await check_cursors(conn),
            await check_job_states(conn),
            await check_done_not_requeued(conn),
            await check_dlq(conn, airflow),
        ]
    for c in checks:
        if c.status == "failed":
            log.error(
                "integrity check %s failed: %d violation(s), e.g. %s", c.name, c.violations, c.examples[:1]
            )
    return IntegrityReport(checks=checks)
