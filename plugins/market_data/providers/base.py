"""The provider Protocol: what every adapter (synthetic, Finnhub, Yahoo, ...) offers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import msgspec

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

    def serves_exchange(self, mic: str) -> bool:
        return not self.exchanges or mic in self.exchanges

    def supports(self, capability: str) -> bool:
        """`capability` is `quotes` or `bars:<interval>`."""
        if capability == "quotes":
            return self.quotes
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
