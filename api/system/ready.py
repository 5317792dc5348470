"""Readiness: Postgres and Redis answer, the live feed listens, and the last sweep is recent enough.

With a read replica (`DATABASE_READ_URL`) the report also says how far it trails the primary
and whether it serves reads; a standby that is down or behind never makes the API unready,
because the primary answers its reads meanwhile (`checks.replica` starts with `degraded`).

"Recent enough" is the active policy's `slo.lag_critical` (15 minutes by default): the newest
`ingestion_cursors.updated_at` may be older only when no market that is swept at least that
often has traded since `lag_critical` after that sweep. While those markets are closed, a stale
sweep is expected: it is reported, and the API stays ready (a closed market is not "not
ready"; 24/7 crypto pairs never close, so with them in a frequent tier a stopped sweep always
shows). Before the first sweep has stored anything the API has nothing to serve and is not
ready; the sweep timetables run each tier at once on the first start, day or night, so that
lasts about a minute.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from api.replica import ReplicaMonitor, ReplicaStatus
from api.schemas import ResponseModel
from api.state import AppResources
from api.ws.hub import Hub
from market_data import calendar
from market_data.policy.schema import Duration, Policy

DEFAULT_MAX_AGE = Duration("15m")
LOOKBACK_CAP = timedelta(days=7)
"""Trading older than this before now is not looked for (a week-old sweep is stale anyway)."""

SWEEP_STATE = """
SELECT (SELECT max(updated_at) FROM ingestion_cursors) AS last_sweep,
       ARRAY(SELECT DISTINCT exchange_mic FROM symbol_universe
             WHERE active AND tier = ANY($1::text[]) ORDER BY 1) AS mics,
       now() AS now"""


class SweepReport(ResponseModel, kw_only=True):
    last_sweep_at: datetime | None
    """Newest `ingestion_cursors.updated_at`."""
    age_seconds: float | None
    max_age_seconds: float
    """The active policy's `slo.lag_critical`."""
    exchanges: list[str]
    """Exchanges of the tiers swept at least every `max_age_seconds`."""
    markets_open: bool
    """Whether one of `exchanges` is trading now."""


class ReadyReport(ResponseModel, kw_only=True):
    status: str
    """`ready` or `not_ready`."""
    checks: dict[str, str]
    """postgres, redis, live_feed, sweep (and replica, with DATABASE_READ_URL): `ok` or why not."""
    not_ready: list[str]
    """The names of the failed checks."""
    sweep: SweepReport | None = None
    replica: ReplicaStatus | None = None
    """The read replica as this API process last measured it (only with DATABASE_READ_URL)."""


def _frequent_tiers(policy: Policy, max_age: float) -> list[str]:
    """Tiers whose sweeps run at least every `max_age` seconds (the ones that keep the cursors fresh)."""
    out = []
    for tier, tp in policy.tiers.items():
        cadence = tp.bar_cadence.seconds
        if tp.quotes and tp.quote_cadence is not None:
            cadence = min(cadence, tp.quote_cadence.seconds)
        if cadence < max_age:
            out.append(str(tier.value))
    return out


def traded_between(mics: list[str], start: datetime, end: datetime) -> bool:
    """Whether any of `mics` traded in [start, end); unknown calendars count as trading."""
    for mic in mics:
        try:
            if calendar.sessions_open_between(mic, start, end):
                return True
        except (calendar.CalendarError, KeyError, ValueError):
            return True
    return False


def open_now(mics: list[str], now: datetime) -> bool:
    for mic in mics:
        try:
            if calendar.is_open_at(mic, now):
                return True
        except (calendar.CalendarError, KeyError, ValueError):
            continue
    return False


async def _check_postgres(resources: AppResources) -> str:
    try:
        async with asyncio.timeout(2):
            await resources.db.fetchval("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


async def _check_redis(resources: AppResources) -> str:
    try:
        assert resources.redis is not None
        async with asyncio.timeout(2):
            await resources.redis.ping()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


async def _check_sweep(resources: AppResources) -> tuple[str, SweepReport | None]:
    try:
        async with asyncio.timeout(3):
            policy = (await resources.policy.get(resources.db)).policy
            max_age = policy.slo.lag_critical.seconds
            row = await resources.db.fetchrow(SWEEP_STATE, _frequent_tiers(policy, max_age))
    except Exception as exc:
        return f"unknown: {type(exc).__name__}", None
    last: datetime | None = row["last_sweep"]
    now: datetime = row["now"]
    mics: list[str] = list(row["mics"] or [])
    due = now - timedelta(seconds=max_age)
    trading = await asyncio.to_thread(open_now, mics, now)
    report = SweepReport(
        last_sweep_at=last,
        age_seconds=round((now - last).total_seconds(), 3) if last else None,
        max_age_seconds=max_age,
        exchanges=mics,
        markets_open=trading,
    )
    if last is None:
        # nothing to serve yet; the timetables plan each tier's first run at once, at any hour
        return "pending: no sweep has stored bars yet (the first runs start at once)", report
    assert report.age_seconds is not None
    if last >= due:
        return "ok", report
    # Overdue only if a market traded after the sweep was due: [last, now - max_age)
    start = max(last, now - LOOKBACK_CAP)
    overdue = await asyncio.to_thread(traded_between, mics, start, due) if start < due else False
    if overdue:
        return f"stale: last sweep {report.age_seconds:.0f} s ago, limit {max_age:.0f} s", report
    return f"ok: markets closed, last sweep {report.age_seconds:.0f} s ago (expected)", report


def replica_check(monitor: ReplicaMonitor) -> str:
    """`ok: ...` while the standby serves reads, else `degraded: why; reads go to the primary`."""
    st = monitor.status
    if st.state == "ok":
        return f"ok: {st.lag_seconds:g} s behind the primary (at most {st.max_lag_seconds:g} s)"
    if st.state == "primary_unreachable":
        return "ok: serving reads while the primary does not answer (lag unknown)"
    why = {
        "unknown": "not checked yet",
        "behind": f"{st.lag_seconds if st.lag_seconds is not None else '?'} s behind the primary, "
        f"more than {st.max_lag_seconds:g} s",
        "down": f"down ({st.error})",
        "not_standby": f"not a standby ({st.error})",
    }[st.state]
    return f"degraded: {why}; reads go to the primary"


async def dependency_checks(resources: AppResources) -> dict[str, str]:
    """postgres and redis: `ok`, or `down: <why>` (the checks of /health, and the first of /ready)."""
    postgres, redis = await asyncio.gather(_check_postgres(resources), _check_redis(resources))
    return {"postgres": postgres, "redis": redis}


async def readiness(resources: AppResources, hub: Hub | None) -> tuple[ReadyReport, bool]:
    """The report and whether every check passed."""
    dependencies, (sweep, sweep_report) = await asyncio.gather(
        dependency_checks(resources), _check_sweep(resources)
    )
    listening = hub is not None and hub.listening()
    checks = {
        **dependencies,
        "live_feed": "ok" if listening else f"down: {hub.feed_error() if hub else 'no hub'}",
        "sweep": sweep,
    }
    failed = [name for name, value in checks.items() if not value.startswith("ok")]
    if resources.replica is not None:
        checks["replica"] = replica_check(resources.replica)
    report = ReadyReport(
        status="not_ready" if failed else "ready",
        checks=checks,
        not_ready=failed,
        sweep=sweep_report,
        replica=resources.replica.status if resources.replica is not None else None,
    )
    return report, not failed
