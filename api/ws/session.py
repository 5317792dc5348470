"""One WebSocket connection: its requests, subscriptions, backlog and sender task.

Two queues feed the socket: replies (acks, errors, snapshots, heartbeats; never dropped, but
bounded) go first, then live messages from the hub (bounded, oldest dropped when full).
While a snapshot is being read, live messages wait so the client sees the snapshot first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec
from litestar.connection import WebSocket
from litestar.exceptions import WebSocketDisconnect

from api.ws.limits import RequestBucket, WsLimits
from api.ws.protocol import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    ClientRequest,
    Ping,
    Pong,
    Problem,
    Resync,
    Snapshot,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    close_code_for,
    decode_request,
    encode,
    error_text,
    heartbeat_text,
)
from api.ws.snapshot import SnapshotRows
from api.ws.subscriptions import BarKey, by_interval, plan_subscribe, plan_unsubscribe, subscription_count

log = logging.getLogger("api.ws.session")

Item = tuple[float | None, str]
"""(notified_at epoch seconds, message text): one object shared by every session it goes to."""


class SessionHub(Protocol):
    """The hub as a session sees it (`api.ws.hub.Hub`): its limits, the subscription index,
    drop and latency accounting, and the store's reads (universe check, snapshot)."""

    @property
    def limits(self) -> WsLimits: ...

    def add(self, session: Session, bar_keys: Iterable[BarKey], quote_keys: Iterable[str]) -> None: ...

    def remove(self, session: Session, bar_keys: Iterable[BarKey], quote_keys: Iterable[str]) -> None: ...

    def unregister(self, session: Session) -> None: ...

    def count_drop(self) -> None: ...

    def observe_latency(self, notified_at: float) -> None: ...

    async def unknown_symbols(self, symbols: list[str]) -> list[str]:
        """The tickers of `symbols` not in the universe; raises when the store cannot tell in time."""
        ...

    async def current_symbols(self, tickers: list[str]) -> dict[str, str]:
        """Old tickers of `tickers` -> the symbol their security is followed under; may raise."""
        ...

    async def read_snapshot(self, bars: dict[str, list[str]], quotes: list[str]) -> SnapshotRows:
        """Newest bar per (symbol, interval) of `bars` and quote per symbol of `quotes`; may raise."""
        ...


class Session:
    """A connected client: created after accept, registered with the hub by `Hub.admit`."""

    def __init__(self, hub: SessionHub, socket: WebSocket, address: str) -> None:
        self.hub = hub
        self.socket = socket
        self.address = address
        self.limits = limits = hub.limits
        self.bar_keys: set[BarKey] = set()
        self.quote_keys: set[str] = set()
        self.data: deque[Item] = deque()
        self.replies: deque[str] = deque()
        self.wake = asyncio.Event()
        self.paused = 0
        self.dropped = 0
        self.sending_since: float | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.done = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.next_heartbeat = loop.time() + self.limits.heartbeat_seconds
        self._window_start = loop.time()
        self._window_drops = 0
        self._requests = RequestBucket(limits.messages_per_second, limits.message_burst, loop.time())
        self.refused = 0
        self._resync: asyncio.Task[None] | None = None

    # --------------------------------------------------------------------------------------------
    # lifecycle
    # --------------------------------------------------------------------------------------------
    async def run(self, initial: Subscribe | None = None, fail_parameter: str | None = None) -> None:
        """Serve the connection until either side closes it.

        Args:
            initial: a subscription to start with (the per-symbol socket).
            fail_parameter: when set, a refused `initial` closes the connection (it is useless
                then), and the error names this parameter (`symbol` of /ws/{symbol}).
        """
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop(initial, fail_parameter))
        try:
            await self.done.wait()
        finally:
            for t in (sender, receiver, self._resync):
                if t is not None:
                    t.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            self.hub.unregister(self)
        if self.close_code is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._goodbye(), self.limits.close_timeout_seconds)

    async def _goodbye(self) -> None:
        """Pending replies (e.g. the error that explains the close), then the close frame."""
        assert self.close_code is not None
        if self.close_code != CLOSE_TOO_SLOW:
            while self.replies:
                await self.socket.send(
                    {"type": "websocket.send", "bytes": None, "text": self.replies.popleft()}
                )
        # a close reason is at most 123 bytes of UTF-8
        reason = self.close_reason.encode()[:123].decode(errors="ignore")
        await self.socket.close(self.close_code, reason)

    def request_close(self, code: int, reason: str) -> None:
        """Close with `code` and `reason` (the first request wins); safe to call from anywhere."""
        if self.close_code is None and not self.done.is_set():
            self.close_code, self.close_reason = code, reason
            log.info("closing ws client %s: %s %s", self.address, code, reason)
        self.done.set()

    def check(self, now: float) -> None:
        """Watchdog tick: close a stalled socket, queue a heartbeat when one is due."""
        since = self.sending_since
        if since is not None and now - since >= self.limits.stall_seconds:
            self.request_close(
                CLOSE_TOO_SLOW,
                f"too slow: nothing read for {self.limits.stall_seconds:g} s while messages waited",
            )
        elif now >= self.next_heartbeat:
            self.next_heartbeat = now + self.limits.heartbeat_seconds
            self.reply(heartbeat_text(self.dropped))

    # --------------------------------------------------------------------------------------------
    # outgoing
    # --------------------------------------------------------------------------------------------
    def push(self, item: Item) -> None:
        """Append a live message; when the backlog is full the oldest one is dropped."""
        if self.done.is_set():
            return
        data = self.data
        if len(data) >= self.limits.max_backlog:
            data.popleft()
            self.dropped += 1
            self.hub.count_drop()
            now = self._loop.time()
            if now - self._window_start > self.limits.drop_window_seconds:
                self._window_start, self._window_drops = now, 0
            self._window_drops += 1
            if self._window_drops >= self.limits.max_drops_in_window:
                self.request_close(
                    CLOSE_TOO_SLOW,
                    f"too slow: {self._window_drops} messages dropped within "
                    f"{self.limits.drop_window_seconds:g} s",
                )
        data.append(item)
        if not self.paused:
            self.wake.set()

    def reply(self, text: str) -> None:
        if len(self.replies) >= self.limits.max_pending_replies:
            self.request_close(CLOSE_POLICY, "too many unread replies")
            return
        self.replies.append(text)
        self.wake.set()

    async def _send_loop(self) -> None:
        send = self.socket.send
        hub, replies, data, batch = self.hub, self.replies, self.data, self.limits.send_batch
        loop = self._loop
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                sent = 0
                while True:
                    notified_at: float | None
                    if replies:
                        notified_at, text = None, replies.popleft()
                    elif data and not self.paused:
                        notified_at, text = data.popleft()
                    else:
                        break
                    self.sending_since = loop.time()
                    await send({"type": "websocket.send", "bytes": None, "text": text})
                    self.sending_since = None
                    if notified_at is not None:
                        hub.observe_latency(notified_at)
                    sent += 1
                    if sent % batch == 0:
                        await asyncio.sleep(0)  # let other clients' senders run
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-send
            log.debug("ws send to %s failed: %s", self.address, exc)
        finally:
            self.sending_since = None
            self.done.set()

    # --------------------------------------------------------------------------------------------
    # incoming
    # --------------------------------------------------------------------------------------------
    async def _receive_loop(self, initial: Subscribe | None, fail_parameter: str | None) -> None:
        try:
            if initial is not None:
                problem = await self._subscribe(initial)
                if problem is not None and fail_parameter is not None:
                    reason = problem.detail.partition(": ")[2] or problem.detail
                    problem = Problem(fail_parameter, f"{fail_parameter}: {reason}", problem.code)
                    self.reply(error_text(problem))
                    self.request_close(close_code_for(problem), problem.detail)
                    return
            while self.close_code is None:
                event = await self.socket.receive()
                if event["type"] == "websocket.disconnect":
                    break
                await self._on_frame(event)
                # a request answered without waiting (the snapshot from the latest-value cache)
                # must not starve the sender: a burst of them would pile up unsent replies
                await asyncio.sleep(0)
        except WebSocketDisconnect:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ws session %s failed", self.address)
            self.request_close(CLOSE_INTERNAL, "internal error")
        finally:
            self.done.set()

    async def _on_frame(self, event: Any) -> None:
        text: str | None = event.get("text")
        raw: bytes | None = event.get("bytes")
        size = len(text.encode()) if text is not None else len(raw or b"")
        if size > self.limits.max_message_bytes:
            self.request_close(
                CLOSE_TOO_BIG, f"message too big: at most {self.limits.max_message_bytes} bytes"
            )
            return
        if not self._requests.take(self._loop.time()):
            self.refused += 1
            if self.refused >= self.limits.max_refused_messages:
                self.request_close(CLOSE_POLICY, "too many messages: request rate limit exceeded repeatedly")
            else:
                self.reply(
                    error_text(
                        Problem(
                            "message",
                            f"message: too many requests (at most {self.limits.messages_per_second:g}/s, "
                            f"bursts of {self.limits.message_burst}); this one was ignored",
                            "rate_limited",
                        )
                    )
                )
            return
        if text is None:
            self.reply(
                error_text(Problem("message", "message: binary frames are not accepted; send JSON text"))
            )
            return
        request = decode_request(text)
        if isinstance(request, Problem):
            self.reply(error_text(request))
            return
        await self._handle(request)

    async def _handle(self, request: ClientRequest) -> None:
        if isinstance(request, Ping):
            self.reply(encode(Pong(id=request.id, ts=round(time.time(), 3))))
        elif isinstance(request, Subscribe):
            problem = await self._subscribe(request)
            if problem is not None:
                self.reply(error_text(problem, request.id))
        elif isinstance(request, Unsubscribe):
            problem = self._unsubscribe(request)
            if problem is not None:
                self.reply(error_text(problem, request.id))

    # --------------------------------------------------------------------------------------------
    # subscriptions
    # --------------------------------------------------------------------------------------------
    def subscription_count(self) -> int:
        return subscription_count(self.bar_keys, self.quote_keys)

    async def _subscribe(self, request: Subscribe) -> Problem | None:
        change = plan_subscribe(request, self.bar_keys, self.quote_keys, self.limits.max_subscriptions)
        if isinstance(change, Problem):
            return change
        try:
            unknown = await self.hub.unknown_symbols(change.tickers)
            renamed = await self.hub.current_symbols(unknown) if unknown else {}
        except Exception as exc:
            return Problem(
                "message", f"message: cannot check symbols now ({type(exc).__name__})", "unavailable"
            )
        if renamed:  # an old ticker follows its security: subscribe to the symbol it is stored under
            request = msgspec.structs.replace(
                request,
                bars=[renamed.get(n.strip().upper(), n) for n in request.bars],
                quotes=[renamed.get(n.strip().upper(), n) for n in request.quotes],
            )
            change = plan_subscribe(request, self.bar_keys, self.quote_keys, self.limits.max_subscriptions)
            if isinstance(change, Problem):
                return change
            unknown = [s for s in unknown if s not in renamed]
        if unknown:
            return change.unknown(unknown)
        # Register first so nothing is missed, but hold live messages until the snapshot is out.
        self.hub.add(self, change.bar_keys, change.quote_keys)
        self.bar_keys |= change.bar_keys
        self.quote_keys |= change.quote_keys
        bars, intervals = change.bars, change.intervals
        self.reply(
            encode(
                Subscribed(
                    id=request.id,
                    bars=bars,
                    quotes=change.quotes,
                    intervals=intervals if bars else [],
                    subscriptions=self.subscription_count(),
                )
            )
        )
        await self._send_snapshot({iv: bars for iv in intervals} if bars else {}, change.quotes, request.id)
        return None

    async def _send_snapshot(
        self, bars: dict[str, list[str]], quotes: list[str], request_id: str | int | None
    ) -> None:
        self.paused += 1
        try:
            rows = await self.hub.read_snapshot(bars, quotes)
            self.reply(
                encode(Snapshot(id=request_id, bars=rows.bars, quotes=rows.quotes, truncated=rows.truncated))
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("ws snapshot for %s failed: %s", self.address, exc)
            self.reply(
                error_text(
                    Problem("snapshot", f"snapshot: unavailable now ({type(exc).__name__})", "unavailable"),
                    request_id,
                )
            )
        finally:
            self.paused -= 1
            self.wake.set()

    def _unsubscribe(self, request: Unsubscribe) -> Problem | None:
        change = plan_unsubscribe(request, self.bar_keys, self.quote_keys)
        if isinstance(change, Problem):
            return change
        self.hub.remove(self, change.bar_keys, change.quote_keys)
        self.bar_keys -= change.bar_keys
        self.quote_keys -= change.quote_keys
        self.reply(
            encode(
                Unsubscribed(
                    id=request.id,
                    bars=change.bars,
                    quotes=change.quotes,
                    intervals=change.intervals,
                    subscriptions=self.subscription_count(),
                )
            )
        )
        return None

    def resync(self, reason: str) -> None:
        """Tell the client updates may have been lost, then send a fresh snapshot of everything."""
        if self.close_code is not None or (self._resync is not None and not self._resync.done()):
            return
        self.reply(encode(Resync(reason=reason)))
        bars = by_interval(self.bar_keys)
        if bars or self.quote_keys:
            self._resync = asyncio.create_task(self._send_snapshot(bars, sorted(self.quote_keys), None))
