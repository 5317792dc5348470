"""Provider selection: health scores, circuit breakers, health history and rate limits."""

from market_data.registry.registry import AllProvidersFailed, FetchOutcome, ProviderRegistry

__all__ = ["AllProvidersFailed", "FetchOutcome", "ProviderRegistry"]
