"""The circuit breaker's state machine (pure; the state lives in Redis, see state.py).

closed --(failure_threshold consecutive failures, or one auth error)--> open
open --(cooldown elapsed: one probe let through)--> half_open
half_open --(probe succeeds)--> closed;  --(probe fails)--> open, cooldown doubled up to max
While the probe is out, other callers wait for its outcome (`Decision.WAIT`). A probe that is
cancelled gives its slot back (`release_probe`); one that never reports back is replaced
after PROBE_TIMEOUT seconds.
"""

from __future__ import annotations

import enum

import msgspec

from market_data.policy.schema import BreakerPolicy
from market_data.providers.errors import AuthError, counts_against_breaker

PROBE_TIMEOUT = 30.0


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    state: str = "closed"
    """closed | open | half_open"""
    failures: int = 0
    """Consecutive failures while closed."""
    opened_at: float = 0.0
    cooldown: float = 0.0
    """Seconds the breaker stays open before a probe (0: the policy's base cooldown)."""
    probe_at: float = 0.0
    """When the outstanding half-open probe was let through."""
    reason: str = ""


class Decision(enum.Enum):
    ALLOW = "allow"
    """Closed: call."""
    PROBE = "probe"
    """This call is the half-open probe: its outcome opens or closes the breaker."""
    WAIT = "wait"
    """Another call is probing: its outcome is due shortly."""
    DENY = "deny"
    """Open and cooling down."""


def decide(s: BreakerState, now: float, policy: BreakerPolicy) -> tuple[Decision, BreakerState]:
    """What a call to the provider may do now, and the state after deciding."""
    if s.state == "closed":
        return Decision.ALLOW, s
    if s.state == "open":
        cooldown = s.cooldown or policy.cooldown.seconds
        if now >= s.opened_at + cooldown:
            return Decision.PROBE, msgspec.structs.replace(s, state="half_open", probe_at=now)
        return Decision.DENY, s
    # half_open: one probe at a time
    if now - s.probe_at >= PROBE_TIMEOUT:
        return Decision.PROBE, msgspec.structs.replace(s, probe_at=now)
    return Decision.WAIT, s


def release_probe(s: BreakerState) -> BreakerState:
    """A probe that will never report (cancelled): let the next caller probe at once."""
    if s.state != "half_open":
        return s
    return msgspec.structs.replace(s, probe_at=0.0)


def on_success(s: BreakerState, policy: BreakerPolicy) -> BreakerState:
    if s.state == "closed" and s.failures == 0:
        return s
    return BreakerState()


def on_failure(s: BreakerState, exc: BaseException, now: float, policy: BreakerPolicy) -> BreakerState:
    """The state after a failed call (failures that are our fault count as successes)."""
    if not counts_against_breaker(exc):
        return on_success(s, policy)
    reason = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:200]
    if isinstance(exc, AuthError):
        # credentials do not fix themselves: open for the longest cooldown at once
        return BreakerState(state="open", opened_at=now, cooldown=policy.max_cooldown.seconds, reason=reason)
    if s.state == "half_open":
        cooldown = min((s.cooldown or policy.cooldown.seconds) * 2, policy.max_cooldown.seconds)
        return BreakerState(state="open", opened_at=now, cooldown=cooldown, reason=reason)
    if s.state == "open":
        return s
    failures = s.failures + 1
    if failures >= policy.failure_threshold:
        return BreakerState(
            state="open", failures=failures, opened_at=now, cooldown=policy.cooldown.seconds, reason=reason
        )
    return msgspec.structs.replace(s, failures=failures, reason=reason)
