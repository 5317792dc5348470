"""The provider registry: which provider serves a capability, and failover between them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

import msgspec

from market_data.policy.schema import Policy
from market_data.providers import build_provider
from market_data.providers.base import BarRequest, Provider
from market_data.providers.errors import ProviderError
from market_data.records import Bar, Quote

log = logging.getLogger(__name__)
T = TypeVar("T")


class AllProvidersFailed(Exception):
    """Every candidate provider for a capability failed (or none is available)."""

    def __init__(self, capability: str, errors: Mapping[str, str]) -> None:
        detail = "; ".join(f"{p}: {e}" for p, e in errors.items()) or "no enabled provider has it"
        super().__init__(f"{capability}: {detail}")
        self.capability = capability
        self.errors = dict(errors)


class FetchOutcome(msgspec.Struct, Generic[T], frozen=True):
    provider: str
    value: T


class ProviderRegistry:
    """Ranks the enabled providers of a capability and fails over between them."""

    def __init__(self, policy: Policy, adapters: Mapping[str, Provider] | None = None) -> None:
        self.policy = policy
        if adapters is None:
            adapters = {
                name: build_provider(name, cfg) for name, cfg in policy.providers.items() if cfg.enabled
            }
        self.adapters = dict(adapters)

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()

    def supports(self, name: str, capability: str) -> bool:
        cfg = self.policy.providers.get(name)
        adapter = self.adapters.get(name)
        if cfg is None or adapter is None or not cfg.enabled:
            return False
        if cfg.capabilities and capability not in cfg.capabilities:
            return False
        return adapter.capabilities.supports(capability)

    def candidates(self, capability: str, preferred: Sequence[str] = ()) -> list[str]:
        """Providers able to serve `capability`, best first."""
        names = [n for n in self.adapters if self.supports(n, capability)]
        if preferred:
            names = [n for n in names if n in preferred] or names
        rank = {n: i for i, n in enumerate(preferred)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), self.policy.providers[n].priority, n))

    async def _with_failover(
        self,
        capability: str,
        preferred: Sequence[str],
        call: Callable[[str, Provider], Awaitable[T]],
    ) -> FetchOutcome[T]:
        errors: dict[str, str] = {}
        for name in self.candidates(capability, preferred):
            try:
                value = await call(name, self.adapters[name])
            except ProviderError as exc:
                errors[name] = f"{type(exc).__name__}: {exc.message}"
                log.warning("provider %s failed for %s: %s; trying the next one", name, capability, exc)
                continue
            return FetchOutcome(provider=name, value=value)
        raise AllProvidersFailed(capability, errors)

    async def fetch_bars(self, request: BarRequest, preferred: Sequence[str] = ()) -> FetchOutcome[list[Bar]]:
        """Bars for a request, from the best provider that answers."""
        capability = f"bars:{request.interval.value}"

        async def call(name: str, adapter: Provider) -> list[Bar]:
            # A fallback provider may take fewer symbols per call than the one the caller sized for.
            per_call = adapter.capabilities.max_symbols_per_request
            if len(request.symbols) <= per_call:
                return await adapter.fetch_bars(request)
            bars: list[Bar] = []
            for i in range(0, len(request.symbols), per_call):
                part = msgspec.structs.replace(request, symbols=request.symbols[i : i + per_call])
                bars.extend(await adapter.fetch_bars(part))
            return bars

        return await self._with_failover(capability, preferred, call)

    async def fetch_quotes(
        self, symbols: Sequence[str], exchange_mic: str, preferred: Sequence[str] = ()
    ) -> FetchOutcome[list[Quote]]:
        async def call(name: str, adapter: Provider) -> list[Quote]:
            per_call = adapter.capabilities.max_symbols_per_request
            quotes: list[Quote] = []
            for i in range(0, len(symbols), per_call):
                quotes.extend(await adapter.fetch_quotes(symbols[i : i + per_call], exchange_mic))
            return quotes

        return await self._with_failover("quotes", preferred, call)

    def max_symbols(self, capability: str, preferred: Sequence[str] = ()) -> int:
        """Symbols per request of the provider that would be asked first."""
        names = self.candidates(capability, preferred)
        return self.adapters[names[0]].capabilities.max_symbols_per_request if names else 1
