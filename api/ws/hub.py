"""In-process fan-out of notifications to WebSocket sessions.

One `Hub` per app: it reads the stream of `md_bars` / `md_quotes` / `md_corporate_actions`
notifications (a corporate action goes to every session following its symbol) that the
channels plugin delivers (one LISTEN connection per process), finds the sessions subscribed
to each message's symbol (exact tickers through a dict, patterns by prefix), and appends the
message, as received, to each session's bounded backlog. Appending never waits: a session
whose socket is slow loses its oldest messages, so no client can slow another down. Each
session's own sender task writes its backlog to its socket.

A watchdog closes sessions whose socket has accepted nothing for `stall_seconds` while
messages wait, and queues heartbeats.

The feed itself is bounded too (the channels plugin keeps the newest `backlog_max`
notifications the hub has not read yet and drops the oldest). When the hub finds that backlog
full, notifications may have been lost, as when LISTEN is lost: the latest-value cache stops
serving (`feed_overflowing`) and is emptied; once the hub has caught up (the backlog is at
most half full) the cache is emptied again and every session gets `resync` and a fresh
snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from api.observability.metrics import ApiMetrics
from api.ws import snapshot
from api.ws.limits import WsLimits
from api.ws.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_LATER,
    is_pattern,
    pattern_prefix,
)
from api.ws.subscriptions import BarKey
from market_data.notifications import ROUTING_DECODER

if TYPE_CHECKING:
    from api.state import AppResources
    from api.ws.backend import ListenerBackend
    from api.ws.session import Item, Session

log = logging.getLogger("api.ws.hub")

SNAPSHOT_CONCURRENCY = 8


class Hub:
    def __init__(self, resources: AppResources, metrics: ApiMetrics, limits: WsLimits | None = None) -> None:
        self.resources = resources
        self.metrics = metrics
        self.limits = limits or WsLimits()
        self.sessions: set[Session] = set()
        self.per_address: Counter[str] = Counter()
        self._bars_exact: dict[BarKey, set[Session]] = {}
        self._bars_prefix: dict[BarKey, set[Session]] = {}
        self._quotes_exact: dict[str, set[Session]] = {}
        self._quotes_prefix: dict[str, set[Session]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._all_closed = asyncio.Event()
        self.snapshot_slots = asyncio.Semaphore(SNAPSHOT_CONCURRENCY)
        """Snapshots read at once (each holds a pooled connection for a few queries)."""
        self.backend: ListenerBackend | None = None
        """Where notifications come from (set by LiveFeed); None: no live feed."""
        self.received = 0
        """Notifications read from the feed."""
        self.undecodable = 0
        self.dropped = 0
        """Messages dropped from full backlogs, all sessions together."""
        self.feed_overflowing = False
        """The feed's backlog was found full and the hub has not caught up yet."""
        self.feed_overflows = 0
        """Times the feed's backlog was found full (notifications may have been lost)."""

    # --------------------------------------------------------------------------------------------
    # lifecycle
    # --------------------------------------------------------------------------------------------
    def start(
        self,
        events: AsyncIterator[bytes],
        backlog: Callable[[], int] | None = None,
        backlog_max: int = 0,
    ) -> None:
        """Start reading `events` (notification payloads) and the watchdog.

        `backlog()`: the notifications waiting in `events` now, of at most `backlog_max` (the
        oldest are dropped beyond it); None (or `backlog_max` 0): `events` drops nothing.
        """
        self._tasks = [
            asyncio.create_task(self._pump(events, backlog, backlog_max), name="ws-hub-pump"),
            asyncio.create_task(self._watchdog(), name="ws-hub-watchdog"),
        ]

    async def stop(self, grace: float = 2.0) -> None:
        """Close every session (1001) and stop the tasks."""
        for s in list(self.sessions):
            s.request_close(CLOSE_GOING_AWAY, "server shutting down")
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def _pump(
        self, events: AsyncIterator[bytes], backlog: Callable[[], int] | None, backlog_max: int
    ) -> None:
        async for payload in events:
            if backlog is not None and backlog_max > 0:
                # one was just taken: a backlog that is still at its limit less one was full
                self.watch_feed_backlog(backlog() + 1, backlog_max)
            self.dispatch(payload)
            # let the senders write before the next notification is fanned out
            await asyncio.sleep(0)

    def watch_feed_backlog(self, waiting: int, limit: int) -> None:
        """React to the feed's backlog of `waiting` of at most `limit` notifications."""
        if not self.feed_overflowing and waiting >= limit:
            self.feed_overflowing = True
            self.feed_overflows += 1
            self.resources.latest.invalidate()
            log.warning(
                "live feed: %d notifications waiting, the oldest are being dropped; the latest-value "
                "cache is off and clients will be resynchronised once the hub has caught up",
                waiting,
            )
        elif self.feed_overflowing and waiting <= limit // 2:
            self.feed_overflowing = False
            self.resources.latest.invalidate()  # before the sessions' resync snapshots read it
            self.resync_all()
            log.info("live feed: caught up (%d waiting); clients resynchronised", waiting)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.limits.watchdog_seconds)
            now = loop.time()
            for s in list(self.sessions):
                s.check(now)

    def listening(self) -> bool:
        """Whether the LISTEN connection is up (notifications can arrive)."""
        return self.backend is not None and self.backend.listening

    def feed_error(self) -> str:
        if self.backend is None:
            return "no live feed"
        return self.backend.last_error or "not listening"

    # --------------------------------------------------------------------------------------------
    # sessions
    # --------------------------------------------------------------------------------------------
    def admit(self, session: Session) -> tuple[int, str] | None:
        """Register a new session, or (close code, reason) when a limit refuses it."""
        if len(self.sessions) >= self.limits.max_clients:
            return CLOSE_TRY_LATER, f"server at capacity ({self.limits.max_clients} connections); try later"
        if self.per_address[session.address] >= self.limits.max_connections_per_address:
            return (
                CLOSE_POLICY,
                f"too many connections from {session.address}: "
                f"at most {self.limits.max_connections_per_address}",
            )
        self.sessions.add(session)
        self._all_closed.clear()
        self.per_address[session.address] += 1
        self.metrics.ws_clients.set(len(self.sessions))
        return None

    def unregister(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.remove(session, session.bar_keys, session.quote_keys)
        self.sessions.discard(session)
        self.per_address[session.address] -= 1
        if self.per_address[session.address] <= 0:
            del self.per_address[session.address]
        if not self.sessions:
            self._all_closed.set()
        self.metrics.ws_clients.set(len(self.sessions))

    def add(self, session: Session, bar_keys: Iterable[BarKey], quote_keys: Iterable[str]) -> None:
        for name, interval in bar_keys:
            index = self._bars_prefix if is_pattern(name) else self._bars_exact
            key = (pattern_prefix(name), interval) if is_pattern(name) else (name, interval)
            index.setdefault(key, set()).add(session)
        for name in quote_keys:
            qindex = self._quotes_prefix if is_pattern(name) else self._quotes_exact
            qindex.setdefault(pattern_prefix(name) if is_pattern(name) else name, set()).add(session)

    def remove(self, session: Session, bar_keys: Iterable[BarKey], quote_keys: Iterable[str]) -> None:
        for name, interval in bar_keys:
            index = self._bars_prefix if is_pattern(name) else self._bars_exact
            key = (pattern_prefix(name), interval) if is_pattern(name) else (name, interval)
            subs = index.get(key)
            if subs is not None:
                subs.discard(session)
                if not subs:
                    del index[key]
        for name in quote_keys:
            qindex = self._quotes_prefix if is_pattern(name) else self._quotes_exact
            qkey = pattern_prefix(name) if is_pattern(name) else name
            qsubs = qindex.get(qkey)
            if qsubs is not None:
                qsubs.discard(session)
                if not qsubs:
                    del qindex[qkey]

    # --------------------------------------------------------------------------------------------
    # the store, as sessions read it
    # --------------------------------------------------------------------------------------------
    async def unknown_symbols(self, symbols: list[str]) -> list[str]:
        """The tickers of `symbols` not in the universe (TimeoutError after the snapshot timeout)."""
        async with asyncio.timeout(self.limits.snapshot_timeout_seconds):
            return await snapshot.unknown_symbols(self.resources, symbols)

    async def current_symbols(self, tickers: list[str]) -> dict[str, str]:
        """Old tickers of `tickers` -> the symbol their security is followed under (FB -> META)."""
        async with asyncio.timeout(self.limits.snapshot_timeout_seconds):
            return await snapshot.current_symbols(self.resources.db, tickers)

    async def read_snapshot(self, bars: dict[str, list[str]], quotes: list[str]) -> snapshot.SnapshotRows:
        """A snapshot, read in one of `SNAPSHOT_CONCURRENCY` slots, within the snapshot timeout."""
        async with self.snapshot_slots, asyncio.timeout(self.limits.snapshot_timeout_seconds):
            return await snapshot.read_snapshot(
                self.resources, bars, quotes, max_symbols=self.limits.max_snapshot_symbols
            )

    def resync_all(self) -> None:
        """After the feed was interrupted: every session gets `resync` and a fresh snapshot."""
        for s in list(self.sessions):
            s.resync("the live feed was interrupted; updates may have been missed")

    # --------------------------------------------------------------------------------------------
    # fan-out
    # --------------------------------------------------------------------------------------------
    def dispatch(self, payload: bytes) -> int:
        """Append one notification to the backlog of every subscribed session; returns how many."""
        self.received += 1
        try:
            note = ROUTING_DECODER.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1
            self.resources.latest.invalidate()  # whose values it changed is unknown
            log.debug("ignoring an undecodable notification: %.200r", payload)
            return 0
        symbol = note.symbol
        if note.type in ("bar", "quote"):
            self.resources.latest.apply(symbol, payload)
        targets: set[Session] | None
        if note.type == "bar":
            interval = note.interval or ""
            targets = self._bars_exact.get((symbol, interval))
            if self._bars_prefix:
                extra = [
                    s
                    for (prefix, iv), subs in self._bars_prefix.items()
                    if iv == interval and symbol.startswith(prefix)
                    for s in subs
                ]
                if extra:
                    targets = set(extra).union(targets) if targets else set(extra)
        elif note.type == "quote":
            targets = self._quotes_exact.get(symbol)
            if self._quotes_prefix:
                extra = [
                    s
                    for prefix, subs in self._quotes_prefix.items()
                    if symbol.startswith(prefix)
                    for s in subs
                ]
                if extra:
                    targets = set(extra).union(targets) if targets else set(extra)
        elif note.type == "corporate_action":
            targets = self._followers(symbol)
        else:
            return 0
        if not targets:
            return 0
        item: Item = (note.notified_at, payload.decode())
        for s in tuple(targets):
            s.push(item)
        return len(targets)

    def _followers(self, symbol: str) -> set[Session]:
        """Sessions following any bars or the quotes of `symbol` (they get its corporate actions)."""
        out: set[Session] = set(self._quotes_exact.get(symbol, ()))
        for (name, _), subs in self._bars_exact.items():
            if name == symbol:
                out.update(subs)
        for index in (self._bars_prefix, self._quotes_prefix):
            for key, subs in index.items():
                prefix = key[0] if isinstance(key, tuple) else key
                if symbol.startswith(prefix):
                    out.update(subs)
        return out

    def count_drop(self) -> None:
        self.dropped += 1
        self.metrics.ws_dropped_messages.inc()

    def observe_latency(self, notified_at: float) -> None:
        self.metrics.ws_publish_latency_ms.observe(max(0.0, (time.time() - notified_at) * 1000.0))
