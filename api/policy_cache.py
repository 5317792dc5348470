"""The active policy as the API sees it: cached briefly, refreshed at once on `md_policy`.

A reload commits a new version and notifies `md_policy`; every API process listening
drops its cached copy. The short TTL covers a missed notification (a reconnect).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import asyncpg

from market_data.notifications import POLICY_CHANNEL
from market_data.policy import LoadedPolicy, load_active_policy

log = logging.getLogger(__name__)
TTL_SECONDS = 5.0


class PolicyCache:
    def __init__(self, fallback_file: Path, ttl: float = TTL_SECONDS) -> None:
        self._fallback = fallback_file
        self._ttl = ttl
        self._loaded: LoadedPolicy | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        self._listener: asyncpg.Connection | None = None

    def invalidate(self, *_: object) -> None:
        self._loaded = None

    async def get(self, pool: asyncpg.Pool) -> LoadedPolicy:
        loaded = self._loaded
        if loaded is not None and time.monotonic() - self._at < self._ttl:
            return loaded
        async with self._lock:
            if self._loaded is None or time.monotonic() - self._at >= self._ttl:
                async with pool.acquire() as conn:
                    self._loaded = await load_active_policy(conn, self._fallback)
                self._at = time.monotonic()
            return self._loaded

    async def listen(self, dsn: str) -> None:
        """Invalidate on every `md_policy` notification (best effort; TTL covers gaps)."""
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(POLICY_CHANNEL, self.invalidate)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("not listening for policy reloads (%s); relying on the %ss cache", exc, self._ttl)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
