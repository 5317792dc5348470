"""Market-data providers: one module per vendor, all behind `base.Provider`.

`ADAPTERS` maps an adapter kind (the policy's `providers.<name>.kind`, or the name) to a
factory taking the provider's name and its policy section. `adapter_capabilities` says
what a kind can serve without building a client (no credentials, no network), for
validating a policy.

The vendor adapters share `http` (client, statuses to errors) and `alignment` (vendor bars
to the calendar's bars); the factories import the adapter modules lazily so a process that
uses only the synthetic provider never loads them.
"""

from __future__ import annotations

from collections.abc import Callable

from market_data.policy.schema import ProviderPolicy, SyntheticFaults
from market_data.providers.base import BarRequest, Capabilities, Provider
from market_data.providers.credentials import MissingCredentialsError
from market_data.providers.synthetic import SyntheticProvider, faults_with_env
from market_data.records import Interval

ProviderFactory = Callable[[str, ProviderPolicy], Provider]


# -- registry ---------------------------------------------------------------------------
def _synthetic(name: str, cfg: ProviderPolicy) -> Provider:
    return SyntheticProvider(name, faults_with_env(cfg.faults))


def _finnhub(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import finnhub

    return finnhub.build(name, cfg)


def _yahoo(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import yahoo

    return yahoo.build(name, cfg)


def _alpaca(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import alpaca

    return alpaca.build(name, cfg)


ADAPTERS: dict[str, ProviderFactory] = {
    "synthetic": _synthetic,
    "finnhub": _finnhub,
    "yahoo": _yahoo,
    "alpaca": _alpaca,
}


class UnknownAdapterError(ValueError):
    pass


def build_provider(name: str, cfg: ProviderPolicy) -> Provider:
    """Instantiate the adapter a policy's provider section names.

    Raises:
        UnknownAdapterError: the kind is not in `ADAPTERS`.
        MissingCredentialsError: the adapter needs credentials and none are configured.
    """
    kind = cfg.adapter(name)
    try:
        factory = ADAPTERS[kind]
    except KeyError:
        raise UnknownAdapterError(f"providers.{name}.kind: unknown adapter {kind!r}") from None
    return factory(name, cfg)


ADAPTER_OPTIONS: dict[str, dict[str, frozenset[str]]] = {
    "alpaca": {"feed": frozenset({"iex", "sip", "delayed_sip"})},
}
"""The `options` each adapter kind accepts, with their allowed values."""


def adapter_capabilities(kind: str, cfg: ProviderPolicy) -> Capabilities:
    """What an adapter kind can serve, without building a client (no credentials, no network).

    Raises:
        UnknownAdapterError: the kind is not in `ADAPTERS`.
    """
    if kind == "synthetic":
        # Mirrors SyntheticProvider.__init__; the policy's faults, not env overrides, since
        # this answers "what does this policy document ask for".
        faults = cfg.faults or SyntheticFaults()
        return Capabilities(
            bar_intervals=frozenset(Interval),
            quotes=True,
            max_symbols_per_request=faults.symbols_per_request,
        )
    if kind == "finnhub":
        from market_data.providers import finnhub

        return finnhub.CAPABILITIES
    if kind == "yahoo":
        from market_data.providers import yahoo

        return yahoo.CAPABILITIES
    if kind == "alpaca":
        from market_data.providers import alpaca

        return alpaca.CAPABILITIES
    raise UnknownAdapterError(f"unknown adapter {kind!r}")


__all__ = [
    "ADAPTERS",
    "ADAPTER_OPTIONS",
    "BarRequest",
    "Capabilities",
    "MissingCredentialsError",
    "Provider",
    "UnknownAdapterError",
    "adapter_capabilities",
    "build_provider",
]
