"""The provider Protocol (what every adapter offers) and `ProviderSpec` (what every adapter
module declares about its kind, as `SPEC`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

import msgspec

from market_data.corporate_actions import CorporateAction
from market_data.policy.schema import ProviderPolicy
from market_data.providers.credentials import Credentials, CredentialSource, read_credentials
from market_data.records import Bar, Interval, Quote


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider can serve and how much per call."""

    bar_intervals: frozenset[Interval]
    quotes: bool
    max_symbols_per_request: int = 1
    """Symbols one bars call may carry (1 for single-symbol endpoints)."""
    max_range: dict[Interval, timedelta] = {}
    """Longest time range one bars call may cover, per interval (missing = unlimited)."""
    exchanges: frozenset[str] = frozenset()
    """Exchange MICs served (empty: any)."""
    corporate_actions: bool = False
    """Serves corporate actions (`CorporateActionSource.fetch_corporate_actions`)."""

    def serves_exchange(self, mic: str) -> bool:
        return not self.exchanges or mic in self.exchanges

    def supports(self, capability: str) -> bool:
        """`capability` is `quotes`, `corporate_actions` or `bars:<interval>`."""
        if capability == "quotes":
            return self.quotes
        if capability == "corporate_actions":
            return self.corporate_actions
        if capability.startswith("bars:"):
            try:
                return Interval(capability[5:]) in self.bar_intervals
            except ValueError:
                return False
        return False


class BarRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Bars for one or more symbols of one exchange, one interval, [start, end)."""

    symbols: tuple[str, ...]
    exchange_mic: str
    interval: Interval
    start: datetime
    end: datetime


@runtime_checkable
class Provider(Protocol):
    """A market-data source. Methods raise `market_data.providers.errors.ProviderError`s.

    An adapter that may make several HTTP requests for one call (pagination) has an
    attribute `extra_request_gate: Callable[[], Awaitable[object]] | None` and awaits it
    before every request after the first; the registry sets it to take a slot of the
    provider's rate limit, so pages count against the limit like calls do.
    """

    name: str
    capabilities: Capabilities
    default_calls_per_minute: int

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        """Complete bars in [start, end) for every symbol of the request; [] when none."""
        ...

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        """Latest quote of each symbol (at most `max_symbols_per_request` of them)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class CorporateActionSource(Protocol):
    """A provider that reports corporate actions (`Capabilities.corporate_actions`)."""

    name: str

    async def fetch_corporate_actions(
        self, symbols: Sequence[str], exchange_mic: str, start: date, end: date
    ) -> list[CorporateAction]:
        """The actions of `symbols` with an ex-date in [start, end]; [] when none."""
        ...


ProviderFactory = Callable[[str, ProviderPolicy, Credentials | None], Provider]
"""Builds an adapter from its policy name, its policy section and its credentials."""


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    """One adapter kind, as its module declares it in `SPEC`; the registry and policy
    validation read nothing else (see `market_data.providers.spec_for`)."""

    kind: str
    """The policy's `providers.<name>.kind`; equal to the module's name."""
    capabilities: Capabilities | Callable[[ProviderPolicy], Capabilities]
    """What the kind serves. A callable when that depends on the provider's policy section
    (synthetic: `faults.symbols_per_request`); read it through `capabilities_for`."""
    default_calls_per_minute: int
    """Rate limit when the policy sets no `calls_per_minute`."""
    factory: ProviderFactory
    """Builds the adapter; it gets credentials exactly when `credentials` is set."""
    options: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The policy `options` keys the kind accepts, each with its allowed values."""
    credentials: CredentialSource | None = None
    """Where its credentials live (environment, Airflow connection); None: it needs none."""

    def capabilities_for(self, cfg: ProviderPolicy) -> Capabilities:
        """What a provider of this kind with policy section `cfg` serves (no client, no network)."""
        if isinstance(self.capabilities, Capabilities):
            return self.capabilities
        return self.capabilities(cfg)

    def build(self, name: str, cfg: ProviderPolicy) -> Provider:
        """The adapter for policy provider `name`.

        Raises:
            MissingCredentialsError: the kind needs credentials and none are configured.
        """
        credentials = read_credentials(self.kind, self.credentials) if self.credentials else None
        return self.factory(name, cfg, credentials)
