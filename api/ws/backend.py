"""Litestar's AsyncPgChannelsBackend, made to survive Postgres going away.

The stock backend connects once at startup (so the app cannot start while Postgres is down)
and never notices a lost LISTEN connection (asyncpg only finds out when it next sends
something). This subclass starts without Postgres, checks its connection every few seconds,
reconnects with backoff, LISTENs again, and calls `on_restored` after a reconnect: the hub
then tells its clients that updates may have been missed and sends fresh snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from functools import partial

import asyncpg
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend

log = logging.getLogger("api.ws.backend")


class ListenerBackend(AsyncPgChannelsBackend):
    """LISTEN through one asyncpg connection per process, reconnecting when it is lost."""

    def __init__(
        self,
        dsn: str,
        *,
        check_seconds: float = 5.0,
        connect_timeout: float = 5.0,
        max_backoff: float = 10.0,
    ) -> None:
        super().__init__(make_connection=partial(asyncpg.connect, dsn=dsn, timeout=connect_timeout))
        self._check_seconds = check_seconds
        self._max_backoff = max_backoff
        self._live: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False
        self.on_restored: Callable[[], None] | None = None
        """Called after a reconnect, once LISTEN is in place again."""
        self.on_lost: Callable[[], None] | None = None
        """Called when the LISTEN connection is found lost (notifications may be missed from now)."""
        self.reconnects = 0
        self.last_error: str | None = None

    @property
    def listening(self) -> bool:
        """Whether notifications can arrive now."""
        return self._live is not None and not self._live.is_closed()

    async def on_startup(self) -> None:
        self._listener_lock = asyncio.Lock()
        self._queue = asyncio.Queue()
        self._wake = asyncio.Event()
        self._closing = False
        try:
            await self._open()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("live feed: cannot LISTEN yet (%s); retrying in the background", self.last_error)
        self._keeper = asyncio.create_task(self._keep_listening(), name="ws-listener-keeper")

    async def on_shutdown(self) -> None:
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        async with self._listener_lock:
            conn, self._live = self._live, None
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
            self._subscribed_channels.clear()
            self._queue = None

    async def subscribe(self, channels: Iterable[str]) -> None:
        async with self._listener_lock:
            for channel in set(channels) - self._subscribed_channels:
                self._subscribed_channels.add(channel)
                if self._live is not None:
                    try:
                        await self._live.add_listener(channel, self._listener)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        self._lost(f"{type(exc).__name__}: {exc}")

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        async with self._listener_lock:
            for channel in set(channels) & self._subscribed_channels:
                self._subscribed_channels.discard(channel)
                if self._live is not None:
                    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        await self._live.remove_listener(channel, self._listener)

    async def _open(self) -> None:
        conn: asyncpg.Connection = await self._connect()
        try:
            async with self._listener_lock:
                for channel in self._subscribed_channels:
                    await conn.add_listener(channel, self._listener)
                conn.add_termination_listener(self._terminated)
                self._listener_conn = conn
                self._live = conn
        except BaseException:
            conn.terminate()
            raise
        self.last_error = None

    def _terminated(self, conn: asyncpg.Connection) -> None:
        if conn is self._live and not self._closing:
            self._lost("connection closed")

    def _lost(self, why: str) -> None:
        conn, self._live = self._live, None
        self.last_error = why
        self._wake.set()
        if conn is not None and not conn.is_closed():
            conn.terminate()
        if self.on_lost is not None:
            self.on_lost()
        if not self._closing:
            log.warning("live feed: LISTEN connection lost (%s); reconnecting", why)

    async def _keep_listening(self) -> None:
        backoff = 0.5
        while not self._closing:
            if self._live is not None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # a loss wakes us at once
                    await asyncio.wait_for(self._wake.wait(), self._check_seconds)
                if self._live is None:
                    continue
                try:
                    # asyncpg notices a dead peer only when it sends: ask something small
                    async with self._listener_lock:
                        if self._live is not None:
                            await asyncio.wait_for(self._live.fetchval("SELECT 1"), self._check_seconds)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, AttributeError):
                    if self._live is not None:
                        self._lost("liveness check failed")
                continue
            try:
                await self._open()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.5
            self.reconnects += 1
            log.info("live feed: LISTEN restored (reconnect %d)", self.reconnects)
            if self.on_restored is not None:
                self.on_restored()
