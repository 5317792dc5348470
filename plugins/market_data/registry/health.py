"""Provider health: the call samples kept per provider and the score computed from them.

    H = 0.45·breaker + 0.25·(1 - latency_norm) + 0.20·(1 - error_rate) + 0.10·(1 - completeness_gap)

(weights from the policy), with breaker closed = 1, half-open = 0.5, open = 0. Every input
comes from the shared 60-sample history, so every process ranks providers the same way.
"""

from __future__ import annotations

import math

import msgspec

from market_data.policy.schema import HealthWeights

HISTORY_SIZE = 60
BREAKER_VALUE = {"closed": 1.0, "half_open": 0.5, "open": 0.0}


class Sample(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One provider call, as stored in the shared history."""

    at: float
    """Unix time of the call's end."""
    capability: str
    latency_ms: float
    ok: bool
    code: str = ""
    """Error label when not ok (status code or error class)."""
    completeness: float | None = None
    """Bars received / bars expected for bar calls with an expectation; None otherwise."""


class HealthSummary(msgspec.Struct, frozen=True, kw_only=True):
    samples: int
    error_rate: float
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    completeness_gap: float
    latency_norm: float


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def summarize(samples: list[Sample], latency_target_ms: float) -> HealthSummary:
    """Error rate, latency and completeness of a provider's recent calls.

    With no samples a provider is presumed healthy (error rate 0, latency at zero), so a new
    or idle provider is tried. Latency counts successful calls only (a refused call is fast).
    """
    n = len(samples)
    errors = sum(1 for s in samples if not s.ok)
    latencies = sorted(s.latency_ms for s in samples if s.ok)
    comp = [s.completeness for s in samples if s.completeness is not None]
    mean = sum(latencies) / len(latencies) if latencies else None
    if mean is None:
        latency_norm = 1.0 if n else 0.0
    else:
        latency_norm = min(1.0, max(0.0, mean / latency_target_ms))
    return HealthSummary(
        samples=n,
        error_rate=errors / n if n else 0.0,
        latency_mean_ms=mean,
        latency_p50_ms=_percentile(latencies, 0.50) if latencies else None,
        latency_p95_ms=_percentile(latencies, 0.95) if latencies else None,
        completeness_gap=1.0 - (sum(comp) / len(comp)) if comp else 0.0,
        latency_norm=latency_norm,
    )


def health_score(
    breaker: str, latency_norm: float, error_rate: float, completeness_gap: float, weights: HealthWeights
) -> float:
    """The predecessor's health score, in [0, 1]."""
    return (
        weights.breaker * BREAKER_VALUE[breaker]
        + weights.latency * (1.0 - latency_norm)
        + weights.errors * (1.0 - error_rate)
        + weights.completeness * (1.0 - completeness_gap)
    )
