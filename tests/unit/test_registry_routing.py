"""Registry routing: pages count against the rate limit, exchange-restricted providers are skipped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from market_data.policy import parse_policy
from market_data.providers.base import BarRequest, Capabilities
from market_data.records import Bar, Interval, Quote
from market_data.registry import ProviderRegistry
from market_data.registry.limiter import CallLimiter

START = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
END = datetime(2026, 11, 23, 14, 40, tzinfo=UTC)


class PagingProvider:
    """Answers every bars call in `pages` HTTP requests, like Alpaca's pagination."""

    default_calls_per_minute = 1000

    def __init__(self, name: str, pages: int, exchanges: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.pages = pages
        self.capabilities = Capabilities(bar_intervals=frozenset(Interval), quotes=True, exchanges=exchanges)
        self.extra_request_gate: Callable[[], Awaitable[object]] | None = None
        self.requests = 0

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        for page in range(self.pages):
            if page and self.extra_request_gate is not None:
                await self.extra_request_gate()
            self.requests += 1
        return []

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        self.requests += 1
        return [Quote(symbol=s, ts=END, provider=self.name, last=1.0) for s in symbols]

    async def aclose(self) -> None:
        return None


class CountingLimiter(CallLimiter):
    def __init__(self) -> None:
        super().__init__(None, "")
        self.acquired: list[str] = []

    async def acquire(
        self, provider: str, calls_per_minute: int, max_wait: float = 60.0, window_seconds: int = 60
    ) -> float:
        self.acquired.append(provider)
        return await super().acquire(provider, calls_per_minute, max_wait, window_seconds)


POLICY = parse_policy(
    '[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n'
    '[providers.us_only]\nkind = "synthetic"\npriority = 1\n'
    '[providers.anywhere]\nkind = "synthetic"\npriority = 2\n'
)


async def test_every_page_takes_a_rate_limit_slot() -> None:
    paging = PagingProvider("us_only", pages=3)
    limiter = CountingLimiter()
    registry = ProviderRegistry(
        POLICY, {"us_only": paging, "anywhere": PagingProvider("anywhere", 1)}, limiter=limiter
    )
    req = BarRequest(symbols=("AAPL",), exchange_mic="XNYS", interval=Interval.M1, start=START, end=END)
    out = await registry.fetch_bars(req)
    assert out.provider == "us_only"
    assert paging.requests == 3
    assert limiter.acquired == ["us_only"] * 3


async def test_providers_that_do_not_serve_an_exchange_are_not_asked() -> None:
    us = PagingProvider("us_only", pages=1, exchanges=frozenset({"XNYS", "XNAS"}))
    anywhere = PagingProvider("anywhere", pages=1)
    registry = ProviderRegistry(POLICY, {"us_only": us, "anywhere": anywhere})
    london = await registry.fetch_quotes(["VOD.L"], "XLON")
    assert london.provider == "anywhere" and us.requests == 0
    new_york = await registry.fetch_quotes(["AAPL"], "XNYS")
    assert new_york.provider == "us_only"
    assert registry.max_symbols("quotes", (), "XLON") == anywhere.capabilities.max_symbols_per_request
