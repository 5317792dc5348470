"""The health score and the breaker state machine (pure functions)."""

from __future__ import annotations

import pytest

from market_data.policy.schema import BreakerPolicy, Duration, HealthWeights
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.registry.breaker import (
    PROBE_TIMEOUT,
    BreakerState,
    Decision,
    decide,
    on_failure,
    on_success,
    release_probe,
)
from market_data.registry.health import Sample, health_score, summarize

W = HealthWeights()
BP = BreakerPolicy(failure_threshold=3, cooldown=Duration("30s"), max_cooldown=Duration("2m"))


def test_worked_example_from_the_issue() -> None:
    # breaker closed, latency_norm 0.2, error 0.05, completeness gap 0.1
    # -> 0.45 + 0.20 + 0.19 + 0.09 = 0.93
    assert health_score("closed", 0.2, 0.05, 0.1, W) == pytest.approx(0.93)


@pytest.mark.parametrize("state,value", [("closed", 1.0), ("half_open", 0.775), ("open", 0.55)])
def test_breaker_term_is_weighted_one_half_zero(state: str, value: float) -> None:
    assert health_score(state, 0.0, 0.0, 0.0, W) == pytest.approx(value)


def test_summary_of_samples() -> None:
    samples = [
        Sample(at=i, capability="bars:1m", latency_ms=100.0 * (i + 1), ok=True, completeness=0.9)
        for i in range(4)
    ]
    samples.append(Sample(at=5, capability="bars:1m", latency_ms=5.0, ok=False, code="503"))
    s = summarize(samples, latency_target_ms=500)
    assert s.samples == 5 and s.error_rate == pytest.approx(0.2)
    assert s.latency_mean_ms == pytest.approx(250.0)  # failures do not count towards latency
    assert s.latency_norm == pytest.approx(0.5)
    assert s.latency_p50_ms == 200.0 and s.latency_p95_ms == 400.0
    assert s.completeness_gap == pytest.approx(0.1)
    empty = summarize([], 500)
    assert (empty.error_rate, empty.latency_norm, empty.completeness_gap) == (0.0, 0.0, 0.0)
    assert summarize([Sample(at=0, capability="quotes", latency_ms=1, ok=False)], 500).latency_norm == 1.0


def test_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    s = BreakerState()
    for i in range(2):
        s = on_failure(s, ServerError("p", "boom", status=503), now=i, policy=BP)
        assert s.state == "closed"
    s = on_success(s, BP)
    assert s.failures == 0  # a success resets the count
    for i in range(3):
        s = on_failure(s, RateLimitedError("p", "429"), now=10 + i, policy=BP)  # 429s count
    assert s.state == "open" and s.opened_at == 12 and s.cooldown == 30


def test_auth_errors_open_at_once_for_the_longest_cooldown() -> None:
    s = on_failure(BreakerState(), AuthError("p", "401", status=401), now=5, policy=BP)
    assert s.state == "open" and s.cooldown == 120


def test_our_own_mistakes_do_not_count() -> None:
    s = BreakerState(failures=2)
    assert on_failure(s, RequestError("p", "bad symbol", status=404), now=0, policy=BP).failures == 0
    assert on_failure(s, BadPayloadError("p", "html"), now=0, policy=BP).state == "open"


def test_open_half_open_probe_and_close() -> None:
    s = BreakerState(state="open", opened_at=100, cooldown=30)
    decision, s2 = decide(s, now=120, policy=BP)
    assert decision is Decision.DENY and s2 == s
    decision, probing = decide(s, now=130, policy=BP)
    assert decision is Decision.PROBE and probing.state == "half_open" and probing.probe_at == 130
    decision, _ = decide(probing, now=131, policy=BP)
    assert decision is Decision.WAIT  # one probe at a time
    decision, _ = decide(probing, now=130 + PROBE_TIMEOUT, policy=BP)
    assert decision is Decision.PROBE  # a probe that never reported back is replaced
    assert on_success(probing, BP) == BreakerState()
    assert decide(BreakerState(), now=0, policy=BP)[0] is Decision.ALLOW  # closed: every call goes


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_max() -> None:
    s = BreakerState(state="half_open", opened_at=100, cooldown=30, probe_at=130)
    s = on_failure(s, ServerError("p", "still down"), now=131, policy=BP)
    assert s.state == "open" and s.cooldown == 60 and s.opened_at == 131
    s = on_failure(BreakerState(state="half_open", cooldown=100), ServerError("p", "x"), now=1, policy=BP)
    assert s.cooldown == 120


def test_while_a_probe_is_out_other_callers_wait_and_a_cancelled_probe_frees_the_slot() -> None:
    s = BreakerState(state="open", opened_at=0, cooldown=30)
    assert decide(s, 10, BP)[0] is Decision.DENY
    decision, probing = decide(s, 31, BP)
    assert decision is Decision.PROBE
    assert decide(probing, 32, BP)[0] is Decision.WAIT
    freed = release_probe(probing)
    assert decide(freed, 33, BP)[0] is Decision.PROBE
    assert release_probe(BreakerState()) == BreakerState()
