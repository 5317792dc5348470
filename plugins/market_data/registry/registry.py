# Over 400 lines: ranking, breaker gating, retries and failover act on one state (reporting: status.py).
"""The provider registry: which provider serves a capability now, and failover between them.

For each call the registry ranks the enabled providers of the capability by health score
(ties: the tier's preference, then the policy's priority, then the name), skips those whose
breaker is open, takes a slot of the provider's rate limit, calls it with retries for
retryable errors, records a sample (latency, outcome, completeness) in the shared history and
updates the breaker; when a provider fails, the next one is tried within the same call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec
import redis.asyncio as aioredis
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from market_data import calendar
from market_data.metrics import CIRCUIT_STATE_VALUES, task_metrics
from market_data.policy.schema import Policy
from market_data.providers import build_provider
from market_data.providers.base import BarRequest, Provider
from market_data.providers.errors import AuthError, ProviderError, RateLimitedError, ServerError, should_retry
from market_data.records import Bar, Quote
from market_data.registry import breaker as brk
from market_data.registry.health import HealthSummary, Sample, health_score, summarize
from market_data.registry.limiter import CallLimiter, LimitWaitExceeded
from market_data.registry.slow_calls import (
    ParamsArg,
    bar_request_params,
    quote_request_params,
    trace_provider_call,
)
from market_data.registry.state import HealthStore, MemoryHealthStore, SharedHealthStore
from market_data.registry.status import ProviderStatus, provider_statuses
from market_data.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 2
"""Extra attempts on the same provider for retryable errors, before failing over."""
PROBE_WAIT = 15.0
"""How long a call waits for another call's half-open probe before giving up on the provider."""
MAX_RETRY_WAIT = 10.0
LIMIT_MAX_WAIT = 30.0
"""How long a call waits for room in its provider's rate limit before the registry moves on to
the next provider (sweeps: fresh data from another provider beats waiting for this one)."""


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
    failed_over: tuple[str, ...] = ()
    """Providers tried before the one that answered."""


def error_code(exc: ProviderError) -> str:
    """The `code` label of provider_errors_total: the HTTP status, or `ban` for 403 Forbidden
    (access refused: a ban, or a plan without access; both need a human)."""
    if isinstance(exc, AuthError) and exc.status == 403:
        return "ban"
    return exc.code


def _endpoint(capability: str) -> str:
    return capability.split(":", 1)[0]


class _Unavailable(Exception):
    """A provider skipped without calling it (breaker open, rate limit wait too long)."""


class ProviderRegistry:
    """Ranks the enabled providers of a capability and fails over between them."""

    def __init__(
        self,
        policy: Policy,
        adapters: Mapping[str, Provider] | None = None,
        *,
        store: HealthStore | None = None,
        limiter: CallLimiter | None = None,
        unavailable: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        retry_wait: Callable[[RetryCallState], float] | None = None,
        limit_window_seconds: int = 60,
        limit_max_wait: float = LIMIT_MAX_WAIT,
    ) -> None:
        # limit_max_wait: seconds a call waits for room in a provider's rate limit before that
        # provider counts as unavailable for it (backfills, pinned to one provider, wait longer)
        self.policy = policy
        self.unavailable = dict(unavailable or {})
        if adapters is None:
            built: dict[str, Provider] = {}
            for name, cfg in policy.providers.items():
                if not cfg.enabled:
                    continue
                try:
                    built[name] = build_provider(name, cfg)
                except ValueError as exc:  # missing credentials, bad override
                    self.unavailable[name] = str(exc)
            adapters = built
        self.adapters = dict(adapters)
        self.store: HealthStore = store or MemoryHealthStore()
        self.limiter = limiter or CallLimiter(None, "")
        self._clock = clock
        self._retry_wait = retry_wait or _retry_wait
        self._limit_window = limit_window_seconds
        self._limit_max_wait = limit_max_wait
        self._redis: aioredis.Redis | None = None
        """The Redis client `shared()` made (closed by aclose)."""
        for name, adapter in self.adapters.items():
            if hasattr(adapter, "extra_request_gate"):  # paginating adapters: every page takes a slot
                adapter.extra_request_gate = self._gate(name)

    def _limit(self, name: str) -> int:
        return self.policy.providers[name].calls_per_minute or self.adapters[name].default_calls_per_minute

    def _gate(self, name: str) -> Callable[[], Awaitable[float]]:
        async def gate() -> float:
            return await self.limiter.acquire(
                name, self._limit(name), self._limit_max_wait, self._limit_window
            )

        return gate

    @classmethod
    def shared(cls, policy: Policy, settings: Settings | None = None, **kwargs: Any) -> ProviderRegistry:
        """A registry whose health, breakers and rate limits live in Redis (REDIS_URL)."""
        s = settings or get_settings()
        client = aioredis.from_url(s.redis_url, socket_timeout=2, socket_connect_timeout=2)
        registry = cls(
            policy,
            store=SharedHealthStore(client, s.redis_prefix),
            limiter=CallLimiter(s.redis_url, s.redis_prefix),
            **kwargs,
        )
        registry._redis = client
        return registry

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    @property
    def degraded(self) -> bool:
        """True while breakers/health/limits are per-process because Redis is unreachable."""
        return bool(getattr(self.store, "degraded", False) or self.limiter.degraded)

    # -- ranking ----------------------------------------------------------------------------
    def supports(self, name: str, capability: str, exchange: str | None = None) -> bool:
        cfg = self.policy.providers.get(name)
        adapter = self.adapters.get(name)
        if cfg is None or adapter is None or not cfg.enabled:
            return False
        if cfg.capabilities and capability not in cfg.capabilities:
            return False
        if exchange is not None and not adapter.capabilities.serves_exchange(exchange):
            return False
        return adapter.capabilities.supports(capability)

    def candidates(
        self, capability: str, preferred: Sequence[str] = (), exchange: str | None = None
    ) -> list[str]:
        """Providers able to serve `capability` (on `exchange`), in static order.

        The order is the tier's preference, then the policy's priority, then the name.
        """
        names = [n for n in self.adapters if self.supports(n, capability, exchange)]
        if preferred:
            names = [n for n in names if n in preferred] or names
        rank = {n: i for i, n in enumerate(preferred)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), self.policy.providers[n].priority, n))

    def probe_due(self, state: brk.BreakerState) -> bool:
        """Whether the breaker would let a probe through now."""
        now = self._clock()
        if state.state == "open":
            return now >= state.opened_at + (state.cooldown or self.policy.breaker.cooldown.seconds)
        return state.state == "half_open" and now - state.probe_at >= brk.PROBE_TIMEOUT

    async def score(self, name: str) -> tuple[float, brk.BreakerState, HealthSummary, list[Sample]]:
        cfg = self.policy.providers[name]
        state = await self.store.breaker(name)
        horizon = self._clock() - self.policy.breaker.history_horizon.seconds
        samples = [s for s in await self.store.samples(name) if s.at >= horizon]
        summary = summarize(samples, cfg.latency_target_ms)
        breaker_state = state.state
        if breaker_state == "open" and self.probe_due(state):
            breaker_state = "half_open"  # a probe would be let through now
        h = health_score(
            breaker_state,
            summary.latency_norm,
            summary.error_rate,
            summary.completeness_gap,
            self.policy.health_weights,
        )
        return h, state, summary, samples

    async def ranked(
        self, capability: str, preferred: Sequence[str] = (), exchange: str | None = None
    ) -> list[tuple[str, float]]:
        """(provider, score) best first.

        A provider whose breaker is due for a probe goes first: the probe is a real request
        (if it fails, the request fails over as usual), so a recovered provider comes back
        even while another one is healthy. Scores are compared at 2 decimals so that noise
        does not flip the order; then preference, priority and name decide.
        """
        order = self.candidates(capability, preferred, exchange)
        position = {n: i for i, n in enumerate(order)}
        keyed = []
        metrics = task_metrics()
        for n in order:
            h, state, _, _ = await self.score(n)
            metrics.gauge("provider_health_score", {"provider": n}, h)
            keyed.append(((not self.probe_due(state), -round(h, 2), position[n]), n, h))
        return [(n, h) for _, n, h in sorted(keyed)]

    def max_symbols(self, capability: str, preferred: Sequence[str] = (), exchange: str | None = None) -> int:
        """Symbols per request of the provider that would be asked first."""
        names = self.candidates(capability, preferred, exchange)
        return self.adapters[names[0]].capabilities.max_symbols_per_request if names else 1

    # -- calling ----------------------------------------------------------------------------
    async def _settle(self, name: str, update: Callable[[brk.BreakerState], brk.BreakerState]) -> None:
        """Apply a breaker transition and publish the breaker's state."""

        def step(current: brk.BreakerState) -> tuple[brk.BreakerState, brk.BreakerState]:
            new = update(current)
            return new, new

        state = await self.store.transition(name, step)
        metrics = task_metrics()
        metrics.gauge("circuit_state", {"provider": name}, CIRCUIT_STATE_VALUES[state.state])
        shared_health = not getattr(self.store, "degraded", False)
        metrics.gauge("registry_shared_state", {"component": "health"}, 1 if shared_health else 0)
        metrics.gauge(
            "registry_shared_state", {"component": "rate_limits"}, 0 if self.limiter.degraded else 1
        )

    async def _attempt(
        self,
        name: str,
        capability: str,
        call: Callable[[Provider], Awaitable[T]],
        completeness: Callable[[T, float], float | None],
        params: ParamsArg = None,
    ) -> T:
        """One call to one provider: breaker gate, rate limit, the call (a WARNING when slow, a
        span when Airflow traces), its sample, the breaker update and the metrics."""
        decision = await self._gate_breaker(name)
        try:
            return await self._call_once(name, capability, call, completeness, params)
        except (asyncio.CancelledError, _Unavailable):
            if decision is brk.Decision.PROBE:  # this probe will never report: free its slot
                await asyncio.shield(self.store.transition(name, lambda s: (None, brk.release_probe(s))))
            raise

    async def _gate_breaker(self, name: str) -> brk.Decision:
        """Wait out another call's half-open probe (briefly); refuse while open."""
        bp = self.policy.breaker
        deadline = time.monotonic() + PROBE_WAIT
        while True:
            decision = await self.store.transition(name, lambda s: brk.decide(s, self._clock(), bp))
            if decision in (brk.Decision.ALLOW, brk.Decision.PROBE):
                return decision
            if decision is brk.Decision.DENY or time.monotonic() >= deadline:
                raise _Unavailable(f"{name}: breaker open")
            await asyncio.sleep(0.1)

    async def _call_once(
        self,
        name: str,
        capability: str,
        call: Callable[[Provider], Awaitable[T]],
        completeness: Callable[[T, float], float | None],
        params: ParamsArg,
    ) -> T:
        bp = self.policy.breaker
        try:
            await self.limiter.acquire(name, self._limit(name), self._limit_max_wait, self._limit_window)
        except LimitWaitExceeded as exc:
            raise _Unavailable(str(exc)) from exc  # never called: no sample, no breaker change
        metrics = task_metrics()
        labels = {"provider": name, "endpoint": _endpoint(capability)}
        started = time.monotonic()
        failure: ProviderError | None = None
        try:
            with trace_provider_call(
                name, capability, threshold_s=self.policy.slo.slow_call.seconds, params=params
            ):
                value = await call(self.adapters[name])
        except ProviderError as exc:
            failure = exc
        except Exception as exc:  # an adapter bug or a transport failure it did not map
            failure = ServerError(name, f"unexpected {type(exc).__name__}: {exc}")
            failure.__cause__ = exc
        latency = (time.monotonic() - started) * 1000
        now = self._clock()
        metrics.observe("provider_latency_ms", labels, latency)
        if failure is not None:
            metrics.incr("provider_errors_total", {**labels, "code": error_code(failure)})
            await self.store.add_sample(
                name, Sample(at=now, capability=capability, latency_ms=latency, ok=False, code=failure.code)
            )
            failed = failure
            await self._settle(name, lambda s: brk.on_failure(s, failed, now, bp))
            raise failure
        await self.store.add_sample(
            name,
            Sample(
                at=now,
                capability=capability,
                latency_ms=latency,
                ok=True,
                completeness=completeness(value, now),
            ),
        )
        await self._settle(name, lambda s: brk.on_success(s, bp))
        return value

    async def _call_provider(
        self,
        name: str,
        capability: str,
        call: Callable[[Provider], Awaitable[T]],
        completeness: Callable[[T, float], float | None],
        params: ParamsArg = None,
    ) -> T:
        """Attempts on one provider, retrying retryable errors with backoff (Retry-After honoured)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 + RETRIES),
            retry=retry_if_exception(should_retry),
            wait=self._retry_wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(name, capability, call, completeness, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(
        self,
        capability: str,
        preferred: Sequence[str],
        call: Callable[[Provider], Awaitable[T]],
        completeness: Callable[[T, float], float | None] = lambda _v, _now: None,
        exchange: str | None = None,
        params: ParamsArg = None,
    ) -> FetchOutcome[T]:
        """`call` on the best provider for `capability` (on `exchange`), failing over to the next ones."""
        errors: dict[str, str] = {}
        for name, _ in await self.ranked(capability, preferred, exchange):
            try:
                value = await self._call_provider(name, capability, call, completeness, params)
            except _Unavailable as exc:
                errors[name] = str(exc)
                continue
            except ProviderError as exc:
                errors[name] = f"{type(exc).__name__}: {exc.message}"
                log.warning("provider %s failed for %s: %s; trying the next one", name, capability, exc)
                continue
            if errors:
                log.warning("%s served by %s after %s failed", capability, name, ", ".join(errors))
            task_metrics().incr("provider_selected_total", {"capability": capability, "provider": name})
            return FetchOutcome(provider=name, value=value, failed_over=tuple(errors))
        raise AllProvidersFailed(capability, errors)

    async def fetch_bars(self, request: BarRequest, preferred: Sequence[str] = ()) -> FetchOutcome[list[Bar]]:
        """Bars for a request, from the best provider that answers."""

        async def bars_call(adapter: Provider) -> list[Bar]:
            # A fallback provider may take fewer symbols per call than the one the caller sized for.
            per_call = adapter.capabilities.max_symbols_per_request
            if len(request.symbols) <= per_call:
                return await adapter.fetch_bars(request)
            bars: list[Bar] = []
            for i in range(0, len(request.symbols), per_call):
                part = msgspec.structs.replace(request, symbols=request.symbols[i : i + per_call])
                bars.extend(await adapter.fetch_bars(part))
            return bars

        def completeness(bars: list[Bar], now: float) -> float | None:
            expected = expected_bar_count(request, now)
            return min(1.0, len(bars) / expected) if expected else None

        return await self.call(
            f"bars:{request.interval.value}",
            preferred,
            bars_call,
            completeness,
            request.exchange_mic,
            params=lambda: bar_request_params(request),
        )

    async def fetch_quotes(
        self, symbols: Sequence[str], exchange_mic: str, preferred: Sequence[str] = ()
    ) -> FetchOutcome[list[Quote]]:
        async def quotes_call(adapter: Provider) -> list[Quote]:
            per_call = adapter.capabilities.max_symbols_per_request
            quotes: list[Quote] = []
            for i in range(0, len(symbols), per_call):
                quotes.extend(await adapter.fetch_quotes(symbols[i : i + per_call], exchange_mic))
            return quotes

        def completeness(quotes: list[Quote], now: float) -> float | None:
            return min(1.0, len(quotes) / len(symbols)) if symbols else None

        return await self.call(
            "quotes",
            preferred,
            quotes_call,
            completeness,
            exchange_mic,
            params=lambda: quote_request_params(symbols, exchange_mic),
        )

    # -- reporting --------------------------------------------------------------------------
    async def statuses(self) -> list[ProviderStatus]:
        """Every provider of the policy (disabled ones too, with the reason), best score first."""
        return await provider_statuses(self)


def expected_bar_count(request: BarRequest, now: float) -> int:
    """Bars a complete answer holds: expected bars that had ended by `now`, per symbol."""
    end_ns = min(calendar.to_ns(request.end), int(now * 1e9))
    start_ns = calendar.to_ns(request.start)
    if end_ns <= start_ns:
        return 0
    starts = calendar.expected_bar_starts_ns(request.exchange_mic, request.interval, start_ns, end_ns)
    if starts.size == 0:
        return 0
    ends = calendar.bar_end_ns(request.exchange_mic, request.interval, starts)
    return int((ends <= end_ns).sum()) * len(request.symbols)


def _retry_wait(state: RetryCallState) -> float:
    """Retry-After when the provider gave one, else 0.25 s doubling, capped."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return min(exc.retry_after, MAX_RETRY_WAIT)
    return min(0.25 * 2 ** (state.attempt_number - 1), MAX_RETRY_WAIT)
