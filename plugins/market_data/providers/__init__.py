"""Market-data providers: one module per vendor, all behind `base.Provider`.

`ADAPTERS` maps an adapter kind (the policy's `providers.<name>.kind`, or the name) to a
factory taking the provider's name and its policy section.
"""

from __future__ import annotations

from collections.abc import Callable

from market_data.policy.schema import ProviderPolicy
from market_data.providers.base import BarRequest, Capabilities, Provider
from market_data.providers.synthetic import SyntheticProvider, faults_with_env

ProviderFactory = Callable[[str, ProviderPolicy], Provider]


def _synthetic(name: str, cfg: ProviderPolicy) -> Provider:
    return SyntheticProvider(name, faults_with_env(cfg.faults))


ADAPTERS: dict[str, ProviderFactory] = {
    "synthetic": _synthetic,
}


class UnknownAdapterError(ValueError):
    pass


def build_provider(name: str, cfg: ProviderPolicy) -> Provider:
    """Instantiate the adapter a policy's provider section names."""
    kind = cfg.adapter(name)
    try:
        factory = ADAPTERS[kind]
    except KeyError:
        raise UnknownAdapterError(f"providers.{name}.kind: unknown adapter {kind!r}") from None
    return factory(name, cfg)


__all__ = ["ADAPTERS", "BarRequest", "Capabilities", "Provider", "build_provider"]
