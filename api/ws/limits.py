"""Limits of the WebSocket feed, per process (one `WsLimits` per app; tests shrink them).

Each can be set from the environment as `MD_WS_<FIELD>` (MD_WS_MAX_BACKLOG=4096,
MD_WS_MAX_CONNECTIONS_PER_ADDRESS=2000 for a load test from one host, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

ENV_PREFIX = "MD_WS_"


class WsLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_backlog: int = 2048
    """Live messages held for one client; when full, the oldest is dropped (and counted)."""
    max_drops_in_window: int = 2048
    """A client that loses this many messages within `drop_window_seconds` is closed (4008)."""
    drop_window_seconds: float = 30.0
    stall_seconds: float = 15.0
    """A client whose socket accepts nothing for this long while messages wait is closed (4008)."""
    close_timeout_seconds: float = 5.0
    """How long a closing client gets to take its close frame before the server gives up on it."""
    heartbeat_seconds: float = 20.0
    """A `heartbeat` message goes to every client this often."""
    watchdog_seconds: float = 1.0
    """How often stalls and heartbeats are checked."""
    max_subscriptions: int = 100
    """Distinct tickers and patterns (bars and quotes together) per connection."""
    max_connections_per_address: int = 50
    max_clients: int = 10_000
    """Connections per API process; more are closed with 1013 (try again later)."""
    max_message_bytes: int = 4096
    """Largest client frame; a larger one closes the connection (1009)."""
    messages_per_second: float = 10.0
    """Sustained rate of client requests; faster ones are refused with `rate_limited`."""
    message_burst: int = 20
    max_refused_messages: int = 50
    """A client refused this many times for its rate is closed (1008)."""
    max_pending_replies: int = 64
    """Replies (acks, errors, snapshots, heartbeats) waiting for one client; beyond: closed (1008)."""
    max_snapshot_symbols: int = 1000
    """Most symbols a pattern expands to in one snapshot (`truncated: true` beyond)."""
    snapshot_timeout_seconds: float = 5.0
    send_batch: int = 64
    """Messages one client's sender writes before it lets other clients run."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WsLimits:
        """Defaults, with any field overridden by `MD_WS_<FIELD>` (e.g. MD_WS_MAX_BACKLOG=4096).

        Raises:
            ValueError: a variable that is not a positive number.
        """
        env = os.environ if environ is None else environ
        given: dict[str, float | int] = {}
        for name in cls.__struct_fields__:
            raw = env.get(f"{ENV_PREFIX}{name.upper()}", "").strip()
            if not raw:
                continue
            kind = type(getattr(_DEFAULTS, name))
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected a number, got {raw!r}") from None
            if value <= 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: must be positive, got {raw!r}")
            given[name] = value
        return msgspec.structs.replace(_DEFAULTS, **given)


_DEFAULTS = WsLimits()


class RequestBucket:
    """Token bucket over one client's requests: `burst` at once, `rate` per second sustained."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> bool:
        """Whether a request at `now` (monotonic seconds) is within the rate; spends a token if so."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
