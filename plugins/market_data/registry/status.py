"""What /stats/providers shows of each provider: the registry's live health plus what the
provider's kind offers, found from its spec without building a client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from market_data.policy.schema import ProviderPolicy
from market_data.providers import UnknownAdapterError, spec_for
from market_data.providers.credentials import MissingCredentialsError, read_credentials
from market_data.records import Interval
from market_data.registry.health import HealthSummary, Sample

if TYPE_CHECKING:
    from market_data.registry.registry import ProviderRegistry

ALL_CAPABILITIES = ["quotes", *(f"bars:{iv.value}" for iv in Interval)]


class ProviderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One provider as /stats/providers shows it."""

    name: str
    kind: str
    enabled: bool
    available: bool
    reason: str | None
    """Why it is not used (disabled by policy, no credentials), when it is not."""
    priority: int
    calls_per_minute: int | None
    capabilities: list[str]
    score: float | None
    breaker: str
    breaker_reason: str
    health: HealthSummary
    samples: list[Sample]


class StaticProviderInfo(msgspec.Struct, frozen=True):
    capabilities: list[str]
    default_calls_per_minute: int | None
    reason: str | None
    """Why it cannot be used whatever the policy says (unknown adapter, no credentials)."""


def static_provider_info(name: str, cfg: ProviderPolicy) -> StaticProviderInfo:
    """What a configured provider offers, found from its kind's spec without building a client."""
    kind = cfg.adapter(name)
    try:
        spec = spec_for(kind)
    except UnknownAdapterError:
        return StaticProviderInfo([], None, f"unknown adapter {kind!r}")
    caps = spec.capabilities_for(cfg)
    names = [
        c for c in ALL_CAPABILITIES if caps.supports(c) and (not cfg.capabilities or c in cfg.capabilities)
    ]
    reason = None
    if spec.credentials is not None:
        try:
            read_credentials(kind, spec.credentials, use_airflow=False)
        except MissingCredentialsError as exc:
            reason = str(exc).split(": ", 1)[-1]
    return StaticProviderInfo(names, spec.default_calls_per_minute, reason)


async def provider_statuses(registry: ProviderRegistry) -> list[ProviderStatus]:
    """Every provider of the registry's policy (disabled ones too, with the reason), best score first.

    Works without built adapters (the API builds none): capabilities, default limits and
    credentials are looked up without a client.
    """
    out: list[ProviderStatus] = []
    for name, cfg in registry.policy.providers.items():
        info = static_provider_info(name, cfg)
        reasons = [
            r
            for r in (
                "disabled by policy" if not cfg.enabled else None,
                registry.unavailable.get(name),
                info.reason,
            )
            if r
        ]
        reason = "; ".join(dict.fromkeys(reasons)) or None
        h, state, summary, samples = await registry.score(name)
        out.append(
            ProviderStatus(
                name=name,
                kind=cfg.adapter(name),
                enabled=cfg.enabled,
                available=reason is None,
                reason=reason,
                priority=cfg.priority,
                calls_per_minute=cfg.calls_per_minute or info.default_calls_per_minute,
                capabilities=info.capabilities,
                score=round(h, 4) if reason is None else None,
                breaker=state.state,
                breaker_reason=state.reason,
                health=summary,
                samples=samples,
            )
        )
    out.sort(key=lambda s: (s.score is None, -(s.score or 0), s.priority, s.name))
    return out
