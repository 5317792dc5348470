"""Where provider health lives: Redis (shared by every task process and the API), with an
in-process fallback used while Redis is unreachable (logged, and flagged as degraded)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Protocol, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from market_data.registry.breaker import BreakerState
from market_data.registry.health import HISTORY_SIZE, Sample

log = logging.getLogger(__name__)
T = TypeVar("T")
Transition = Callable[[BreakerState], tuple[T, BreakerState]]

_sample_encoder = msgspec.msgpack.Encoder()
_sample_decoder = msgspec.msgpack.Decoder(Sample)
_state_decoder = msgspec.json.Decoder(BreakerState)
REDIS_RETRY_SECONDS = 15.0


class HealthStore(Protocol):
    async def transition(self, provider: str, fn: Transition[T]) -> T:
        """Atomically read the breaker, apply `fn`, store its new state; returns fn's value."""
        ...

    async def breaker(self, provider: str) -> BreakerState: ...

    async def add_sample(self, provider: str, sample: Sample) -> None: ...

    async def samples(self, provider: str) -> list[Sample]:
        """The newest HISTORY_SIZE samples, newest first."""
        ...


class MemoryHealthStore:
    """Per-process state (tests, and the fallback while Redis is away)."""

    def __init__(self) -> None:
        self._breakers: dict[str, BreakerState] = {}
        self._samples: dict[str, deque[Sample]] = defaultdict(lambda: deque(maxlen=HISTORY_SIZE))

    async def transition(self, provider: str, fn: Transition[T]) -> T:
        value, new = fn(self._breakers.get(provider, BreakerState()))
        self._breakers[provider] = new
        return value

    async def breaker(self, provider: str) -> BreakerState:
        return self._breakers.get(provider, BreakerState())

    async def add_sample(self, provider: str, sample: Sample) -> None:
        self._samples[provider].appendleft(sample)

    async def samples(self, provider: str) -> list[Sample]:
        return list(self._samples[provider])


class RedisHealthStore:
    """Shared state: `<prefix>provider:<name>:breaker` (JSON) and `...:samples` (list)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix

    def _key(self, provider: str, what: str) -> str:
        return f"{self._prefix}provider:{provider}:{what}"

    async def transition(self, provider: str, fn: Transition[T]) -> T:
        key = self._key(provider, "breaker")
        for _ in range(50):
            async with self._r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    current = _state_decoder.decode(raw) if raw else BreakerState()
                    value, new = fn(current)
                    if new != current:
                        pipe.multi()
                        pipe.set(key, msgspec.json.encode(new))
                        await pipe.execute()
                    else:
                        await pipe.unwatch()
                    return value
                except WatchError:
                    continue  # another process changed it first: decide again on the new state
        raise RedisError(f"breaker of {provider}: too much contention")

    async def breaker(self, provider: str) -> BreakerState:
        raw = await self._r.get(self._key(provider, "breaker"))
        return _state_decoder.decode(raw) if raw else BreakerState()

    async def add_sample(self, provider: str, sample: Sample) -> None:
        key = self._key(provider, "samples")
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.lpush(key, _sample_encoder.encode(sample))
            pipe.ltrim(key, 0, HISTORY_SIZE - 1)
            await pipe.execute()

    async def samples(self, provider: str) -> list[Sample]:
        raw: list[bytes] = await self._r.lrange(self._key(provider, "samples"), 0, HISTORY_SIZE - 1)  # type: ignore[assignment]
        return [_sample_decoder.decode(x) for x in raw]


class SharedHealthStore:
    """Redis when it answers, the in-process store when it does not (and says so)."""

    def __init__(self, client: aioredis.Redis | None, prefix: str) -> None:
        self._redis = RedisHealthStore(client, prefix) if client is not None else None
        self._memory = MemoryHealthStore()
        self._down_since: float | None = None if client is not None else time.monotonic()
        self.on_degraded: Callable[[bool], None] | None = None

    @property
    def degraded(self) -> bool:
        """True while decisions are made on this process's own state only."""
        return self._down_since is not None

    def _use_redis(self) -> bool:
        if self._redis is None:
            return False
        if self._down_since is not None and time.monotonic() - self._down_since < REDIS_RETRY_SECONDS:
            return False
        return True

    def _failed(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning(
                "Redis is unreachable (%s): provider breakers, health and rate limits are per-process "
                "until it returns",
                exc,
            )
            if self.on_degraded:
                self.on_degraded(True)
        self._down_since = time.monotonic()

    def _ok(self) -> None:
        if self._down_since is not None and self._redis is not None:
            log.warning("Redis is back: provider health is shared again")
            self._down_since = None
            if self.on_degraded:
                self.on_degraded(False)

    async def _call(self, op: str, *args: object) -> object:
        if self._use_redis():
            assert self._redis is not None
            try:
                result = await getattr(self._redis, op)(*args)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._ok()
                return result
        return await getattr(self._memory, op)(*args)

    async def transition(self, provider: str, fn: Transition[T]) -> T:
        return await self._call("transition", provider, fn)  # type: ignore[return-value]

    async def breaker(self, provider: str) -> BreakerState:
        return await self._call("breaker", provider)  # type: ignore[return-value]

    async def add_sample(self, provider: str, sample: Sample) -> None:
        await self._call("add_sample", provider, sample)

    async def samples(self, provider: str) -> list[Sample]:
        return await self._call("samples", provider)  # type: ignore[return-value]
