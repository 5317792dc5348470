"""Per-provider call limits across every process: a moving window in Redis (`limits`).

The moving window counts every call of the last 60 seconds, so the configured calls per
minute is never exceeded in any window, however many task processes share the provider.
While Redis is unreachable each process falls back to its own window (and says so).

Each call is counted over the window plus SAFETY_MARGIN seconds: the window is stamped with
the client's clock before the Redis round trip, and the call itself reaches the provider a
little later (connection set-up, event-loop scheduling). Without the margin, a burst admitted
just as the previous burst leaves the window can land inside the provider's own window with
it (measured: two 20-call bursts 1.95 s apart under a 2 s window). With it the provider's
count stays under the limit unless that delay exceeds a second; the cost is 1/61 of the rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

log = logging.getLogger(__name__)
SAFETY_MARGIN = 1


class LimitWaitExceeded(Exception):
    """The provider's window stays full longer than the caller is willing to wait."""

    def __init__(self, provider: str, waited: float) -> None:
        super().__init__(f"{provider}: rate limit window still full after {waited:.1f}s")
        self.provider = provider


class CallLimiter:
    def __init__(self, redis_url: str | None, prefix: str) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=f"{prefix}ratelimit",
                wrap_exceptions=True,
                socket_timeout=2,
                socket_connect_timeout=2,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self.degraded = self._shared is None

    async def _hit(self, item: RateLimitItem, provider: str) -> bool:
        if self._shared is not None:
            try:
                ok = await self._shared.hit(item, provider)
            except StorageError as exc:
                if not self.degraded:
                    log.warning("rate limits fall back to this process only: Redis error %s", exc)
                self.degraded = True
            else:
                self.degraded = False
                return ok
        return await self._memory.hit(item, provider)

    async def _reset_in(self, item: RateLimitItem, provider: str) -> float:
        limiter = self._shared if (self._shared is not None and not self.degraded) else self._memory
        try:
            stats = await limiter.get_window_stats(item, provider)
        except StorageError:
            return 1.0
        return max(0.0, stats.reset_time - time.time())

    async def acquire(
        self, provider: str, calls_per_minute: int, max_wait: float = 60.0, window_seconds: int = 60
    ) -> float:
        """Take one call from the provider's window, waiting for room; returns seconds waited.

        Args:
            window_seconds: the moving window; the limit scales with it (tests use short windows).

        Raises:
            LimitWaitExceeded: no room within `max_wait` seconds.
        """
        calls = max(1, int(calls_per_minute * window_seconds / 60))
        item = RateLimitItemPerSecond(calls, window_seconds + SAFETY_MARGIN)
        started = time.monotonic()
        while not await self._hit(item, provider):
            waited = time.monotonic() - started
            if waited >= max_wait:
                raise LimitWaitExceeded(provider, waited)
            # sleep until the oldest call leaves the window (jittered so waiters spread out)
            pause = min(await self._reset_in(item, provider), max_wait - waited)
            await asyncio.sleep(max(0.005, pause) + random.uniform(0, 0.02))  # noqa: S311
        return time.monotonic() - started
