"""GET /stats/slo: the latest SLO sample per (tier, interval), a recent history, the thresholds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from api.errors import BadParameter
from api.schemas import UNAVAILABLE, ErrorBody, ResponseModel, documented
from api.state import Resources
from market_data.policy.schema import SloPolicy
from market_data.records import ensure_utc, utcnow
from market_data.slo_samples import LagStatus, SloSample, assess, latest_samples, recent_samples

MAX_LIMIT = 1000
"""Most history rows one request returns."""
MAX_SINCE_AGE = timedelta(days=90)
"""`since` may reach this far back (retention keeps 30 days by default)."""


class SloThresholds(ResponseModel, kw_only=True):
    """The active policy's SLO section (what `met` is judged against)."""

    gap_threshold_multiplier: float
    violation_rate_max: float
    window_seconds: float
    sample_size: int
    lag_warn_seconds: float
    lag_critical_seconds: float
    slow_call_seconds: float


class SloRow(ResponseModel, kw_only=True):
    """One stored sample with its verdict against the active thresholds."""

    id: int | None
    sampled_at: datetime
    tier: str
    interval: str
    sampled_symbols: int
    violating_symbols: int
    violation_rate: float
    """Share of sampled symbols whose largest gap exceeds gap_threshold_seconds."""
    max_gap_seconds: float | None
    gap_threshold_seconds: float
    lag_seconds: float | None
    """Worst active symbol: completed expected bars not ingested yet x interval (trading time)."""
    lag_p95_seconds: float | None
    lag_status: LagStatus
    queue_depth: int | None
    """Backfill jobs queued or running for the tier."""
    oldest_age_seconds: float | None
    active_symbols: int | None
    uncovered_symbols: int | None
    """Active symbols never ingested for the interval (not in the lag)."""
    policy_version: int | None
    """The policy version the sampling run used."""
    expected_bars: int | None
    """Expected bars of the sampled symbols' windows ended by sampled_at (coverage)."""
    missing_bars: int | None
    """Of those, neither stored nor confirmed empty."""
    confirmed_empty_bars: int | None
    """Of those, not stored and confirmed empty by a provider."""
    continuity_met: bool
    met: bool
    """Continuity met and the lag known and not critical."""


class SloReport(ResponseModel, kw_only=True):
    policy_version: int
    """The active policy version the thresholds come from."""
    thresholds: SloThresholds
    latest: list[SloRow]
    """The newest sample of every (tier, interval), ordered by tier and interval."""
    history: list[SloRow]
    """Recent samples, newest first."""


LimitQuery = Annotated[
    int, Parameter(ge=1, le=MAX_LIMIT, description=f"History rows returned, newest first (1..{MAX_LIMIT})")
]
SinceQuery = Annotated[
    datetime | None,
    Parameter(
        description=(
            "History from this instant on (ISO 8601; UTC if no offset), at most "
            f"{MAX_SINCE_AGE.days} days ago; default: no lower bound"
        )
    ),
]


def _thresholds(slo: SloPolicy) -> SloThresholds:
    return SloThresholds(
        gap_threshold_multiplier=slo.gap_threshold_multiplier,
        violation_rate_max=slo.violation_rate_max,
        window_seconds=slo.window.seconds,
        sample_size=slo.sample_size,
        lag_warn_seconds=slo.lag_warn.seconds,
        lag_critical_seconds=slo.lag_critical.seconds,
        slow_call_seconds=slo.slow_call.seconds,
    )


def _row(s: SloSample, slo: SloPolicy) -> SloRow:
    verdict = assess(s, slo)
    return SloRow(
        id=s.id,
        sampled_at=s.sampled_at,
        tier=s.tier,
        interval=s.interval,
        sampled_symbols=s.sampled_symbols,
        violating_symbols=s.violating_symbols,
        violation_rate=s.violation_rate,
        max_gap_seconds=s.max_gap_seconds,
        gap_threshold_seconds=verdict.gap_threshold_seconds,
        lag_seconds=s.lag_seconds,
        lag_p95_seconds=s.lag_p95_seconds,
        lag_status=verdict.lag_status,
        queue_depth=s.queue_depth,
        oldest_age_seconds=s.oldest_age_seconds,
        active_symbols=s.active_symbols,
        uncovered_symbols=s.uncovered_symbols,
        policy_version=s.policy_version,
        expected_bars=s.expected_bars,
        missing_bars=s.missing_bars,
        confirmed_empty_bars=s.confirmed_empty_bars,
        continuity_met=verdict.continuity_met,
        met=verdict.met,
    )


def _since(value: datetime | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    v = ensure_utc(value)
    if v > now:
        raise BadParameter("since: must not be in the future", parameter="since")
    if now - v > MAX_SINCE_AGE:
        raise BadParameter(f"since: at most {MAX_SINCE_AGE.days} days ago", parameter="since")
    return v


class SloController(Controller):
    tags = ["stats"]

    @get(
        "/stats/slo",
        operation_id="getSloStats",
        summary="SLO samples: gap violation rate, ingestion lag, backfill queue",
        description=(
            "What md_slo measured (every 5 minutes) per tier and interval: the share of sampled symbols "
            "whose largest gap (expected bars missing in a row, in trading time: closed hours and "
            "confirmed-empty ranges never count) exceeds gap_threshold_multiplier x interval; the "
            "ingestion lag (completed bars not ingested yet x interval) of the worst symbol and its p95; "
            "the backfill queue depth and oldest job age. `latest` has the newest row of each (tier, "
            "interval), `history` the recent rows newest first. `met` compares each row with the "
            "active policy's thresholds (returned in `thresholds`)."
        ),
        responses={
            400: documented(ErrorBody, description="`limit` or `since` out of range"),
            503: UNAVAILABLE,
        },
    )
    async def slo(self, resources: Resources, limit: LimitQuery = 100, since: SinceQuery = None) -> SloReport:
        start = _since(since, utcnow())
        loaded = await resources.policy.get(resources.db)
        slo = loaded.policy.slo
        latest = await resources.reads.run(latest_samples)
        history = await resources.reads.run(lambda db: recent_samples(db, limit=limit, since=start))
        return SloReport(
            policy_version=loaded.version,
            thresholds=_thresholds(slo),
            latest=[_row(s, slo) for s in latest],
            history=[_row(s, slo) for s in history],
        )
