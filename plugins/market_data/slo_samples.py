"""SLO samples: the rows `md_slo` stores in `slo_samples`, how one compares with the policy's
thresholds, and the gauges a run sends. What the values mean: `market_data.slo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypeAlias

import asyncpg
import msgspec

from market_data.metrics import TaskMetrics
from market_data.policy.schema import SloPolicy
from market_data.records import Interval


class SloSample(msgspec.Struct, frozen=True, kw_only=True):
    """One (tier, interval) row of `slo_samples`."""

    sampled_at: datetime
    tier: str
    interval: str
    sampled_symbols: int
    violating_symbols: int
    violation_rate: float
    max_gap_seconds: float | None
    """Largest gap among the sampled symbols (None when none was sampled)."""
    lag_seconds: float | None
    """Worst active symbol's lag (None when no active symbol has a cursor)."""
    lag_p95_seconds: float | None
    queue_depth: int | None
    """Backfill jobs queued or running for the tier."""
    oldest_age_seconds: float | None
    active_symbols: int | None
    uncovered_symbols: int | None
    """Active symbols without a cursor for the interval (left out of the lag)."""
    policy_version: int | None
    expected_bars: int | None = None
    """Expected bars of the sampled symbols' windows ended by the sample's instant (coverage)."""
    missing_bars: int | None = None
    """Of those, neither stored nor confirmed empty."""
    confirmed_empty_bars: int | None = None
    """Of those, not stored and confirmed empty by a provider (minutes without trades)."""
    id: int | None = None


LagStatus = Literal["ok", "warn", "critical", "unknown"]


class SloAssessment(msgspec.Struct, frozen=True, kw_only=True):
    """How a sample compares with the SLO thresholds of a policy."""

    gap_threshold_seconds: float
    continuity_met: bool
    """violation_rate <= slo.violation_rate_max."""
    lag_status: LagStatus
    """ok / warn (> lag_warn) / critical (> lag_critical) / unknown (no cursor at all).
    Both thresholds are at least one interval: a bar cannot be fetched before it ends."""
    met: bool
    """continuity_met and lag_status is ok or warn."""


def gap_threshold_seconds(interval: Interval, multiplier: float) -> float:
    """Longest gap that does not violate: multiplier x interval."""
    return float(multiplier) * interval.seconds


def assess(sample: SloSample, slo: SloPolicy) -> SloAssessment:
    """Compare one sample with the SLO thresholds (see SloAssessment)."""
    interval = Interval(sample.interval)
    continuity = sample.violation_rate <= slo.violation_rate_max
    status: LagStatus
    if sample.lag_seconds is None:
        status = "unknown"
    elif sample.lag_seconds > max(slo.lag_critical.seconds, interval.seconds):
        status = "critical"
    elif sample.lag_seconds > max(slo.lag_warn.seconds, interval.seconds):
        status = "warn"
    else:
        status = "ok"
    return SloAssessment(
        gap_threshold_seconds=gap_threshold_seconds(interval, slo.gap_threshold_multiplier),
        continuity_met=continuity,
        lag_status=status,
        met=continuity and status in ("ok", "warn"),
    )


_COLUMNS = (
    "sampled_at",
    "tier",
    "interval",
    "sampled_symbols",
    "violating_symbols",
    "violation_rate",
    "max_gap_seconds",
    "lag_seconds",
    "lag_p95_seconds",
    "queue_depth",
    "oldest_age_seconds",
    "active_symbols",
    "uncovered_symbols",
    "policy_version",
    "expected_bars",
    "missing_bars",
    "confirmed_empty_bars",
)

_INSERT = f"""
INSERT INTO slo_samples ({", ".join(_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})"""

_SELECT = f"SELECT id, {', '.join(_COLUMNS)} FROM slo_samples"

_RECENT = f"""{_SELECT} WHERE ($1::timestamptz IS NULL OR sampled_at >= $1)
ORDER BY sampled_at DESC, id DESC LIMIT $2"""

_LATEST = f"""SELECT DISTINCT ON (tier, interval) id, {", ".join(_COLUMNS)} FROM slo_samples
ORDER BY tier, interval, sampled_at DESC, id DESC"""


Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
"""What the queries run on: a task's connection or the API's pool."""


def _row(s: SloSample) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in _COLUMNS)


async def store_samples(conn: asyncpg.Connection, sampled_at: datetime, samples: Sequence[SloSample]) -> None:
    """Replace the rows of instant `sampled_at` with `samples` (one transaction)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM slo_samples WHERE sampled_at = $1", sampled_at)
        if samples:
            await conn.executemany(_INSERT, [_row(s) for s in samples])


def emit_slo_gauges(
    samples: Sequence[SloSample], metrics: TaskMetrics, *, policy_version: int | None
) -> None:
    """Send the run's gauges: the violation rate and coverage per (tier, interval), the lag per interval.

    `ingestion_lag_seconds{interval}` takes the worst tier's value; an interval whose tiers
    have no cursor at all is not sent. The queue gauges are the API's (read at scrape time).
    """
    worst_lag: dict[str, float] = {}
    for s in samples:
        pair = {"tier": s.tier, "interval": s.interval}
        metrics.gauge("slo_gap_violation_rate", pair, s.violation_rate)
        if s.expected_bars is not None:
            metrics.gauge("slo_expected_bars", pair, s.expected_bars)
            metrics.gauge("slo_missing_bars", pair, s.missing_bars or 0)
            metrics.gauge("slo_confirmed_empty_bars", pair, s.confirmed_empty_bars or 0)
        if s.lag_seconds is not None:
            worst_lag[s.interval] = max(worst_lag.get(s.interval, 0.0), s.lag_seconds)
    for interval, lag in worst_lag.items():
        metrics.gauge("ingestion_lag_seconds", {"interval": interval}, lag)
    if policy_version is not None:
        metrics.gauge("policy_version_info", {"version": str(policy_version)}, 1.0)


def _sample(r: asyncpg.Record) -> SloSample:
    return SloSample(**{k: r[k] for k in ("id", *_COLUMNS)})


async def recent_samples(db: Db, *, limit: int = 100, since: datetime | None = None) -> list[SloSample]:
    """Stored rows, newest first: at most `limit`, none older than `since`."""
    return [_sample(r) for r in await db.fetch(_RECENT, since, limit)]


async def latest_samples(db: Db) -> list[SloSample]:
    """The newest row of every (tier, interval) ever sampled, ordered by tier and interval."""
    return [_sample(r) for r in await db.fetch(_LATEST)]
