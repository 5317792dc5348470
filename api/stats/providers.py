"""GET /stats/providers: every known provider with its live health, from the shared Redis state."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from api.schemas import UNAVAILABLE, ResponseModel
from api.state import Resources
from market_data.registry import ProviderRegistry
from market_data.registry.health import Sample
from market_data.registry.registry import ProviderStatus
from market_data.registry.state import SharedHealthStore


class RecentCall(Sample, frozen=True, kw_only=True, array_like=False):
    """One of the provider's last calls (an object here; the shared store keeps arrays)."""


class ProviderState(ProviderStatus, frozen=True, kw_only=True):
    """ProviderStatus with its samples as objects, as the document describes them."""

    samples: list[RecentCall]  # type: ignore[assignment]  # the same samples, encoded as objects


class ProvidersReport(ResponseModel, kw_only=True):
    policy_version: int
    shared_state: bool
    """False when Redis is unreachable: these figures are this API process's own."""
    providers: list[ProviderState]


def _state(status: ProviderStatus) -> ProviderState:
    fields = msgspec.structs.asdict(status)
    fields["samples"] = [RecentCall(**msgspec.structs.asdict(s)) for s in status.samples]
    return ProviderState(**fields)


class ProvidersController(Controller):
    tags = ["stats"]

    @get(
        "/stats/providers",
        operation_id="getProviderStats",
        summary="Provider health: score, breaker, error rate, latency, last 60 calls",
        description=(
            "Every provider of the active policy, including disabled ones and why (disabled by policy, "
            "no credentials). Scores follow H = 0.45·breaker + 0.25·(1 - latency_norm) + "
            "0.20·(1 - error_rate) + 0.10·(1 - completeness_gap) over the shared 60-call history."
        ),
        responses={503: UNAVAILABLE},
    )
    async def providers(self, resources: Resources) -> ProvidersReport:
        loaded = await resources.policy.get(resources.db)
        store = SharedHealthStore(resources.redis, resources.settings.redis_prefix)
        registry = ProviderRegistry(loaded.policy, adapters={}, store=store)
        statuses = await registry.statuses()
        return ProvidersReport(
            policy_version=loaded.version,
            shared_state=not store.degraded,
            providers=[_state(s) for s in statuses],
        )
