"""The WebSocket wire format: client requests, server messages, close codes, validation.

Client -> server (JSON text frames, at most `WsLimits.max_message_bytes` each):

    {"action": "subscribe",   "bars": ["AAPL", "MSFT"], "quotes": ["*"], "intervals": ["1m"], "id": 1}
    {"action": "unsubscribe", "bars": ["AAPL"], "intervals": ["1m"], "quotes": [], "id": 2}
    {"action": "unsubscribe", "all": true}
    {"action": "ping", "id": 3}

`bars` and `quotes` take tickers (case-insensitive), `"*"` (every symbol) or a prefix pattern
ending in `*` (`"BRK.*"`, `"GEN0*"`). `intervals` applies to the `bars` of the same request
(default `["1m"]`; on unsubscribe, default: every interval): any timeframe of /history
(1m-59m, 1h-23h, 1d, 1w, 1mo). `id` (string or integer) is echoed
in the reply. Unknown fields, actions or values are refused with an `error` message naming
the field; the connection stays open.

Server -> client:

    {"type": "subscribed", "id": 1, "bars": [...], "quotes": [...], "intervals": [...], "subscriptions": 3}
    {"type": "snapshot", "id": 1, "bars": [<bar>...], "quotes": [<quote>...], "truncated": false}
    {"type": "bar", "symbol", "interval", "ts", "as_of", "provider", "open", "high", "low", "close",
     "volume", "vwap", "trade_count", "version", "revision", "previous_as_of", "notified_at"}
    {"type": "quote", "symbol", "ts", "provider", "last", "bid", "ask", "bid_size", "ask_size",
     "notified_at"}
    {"type": "unsubscribed", "id": 2, "bars": [...], "quotes": [...], "intervals": [...], "subscriptions": 1}
    {"type": "pong", "id": 3, "ts": 1732377600.123}
    {"type": "heartbeat", "ts": 1732377600.123, "dropped": 0}
    {"type": "resync", "reason": "..."}           (followed by a fresh snapshot)
    {"type": "error", "id": 1, "code": "invalid", "parameter": "bars[2]", "detail": "bars[2]: ..."}

Live `bar` / `quote` messages are the ingest path's `pg_notify` payloads, forwarded as they
are (`market_data.notifications`; `notified_at` is the epoch second of the notification):
stored bars only, so a subscription to a timeframe the store does not hold for a symbol (1h of
a symbol that stores 1m bars) gets no live bars of it; subscribe to the stored interval as
well to follow it live. Snapshot entries have the same shape without `notified_at`; the entry
of a timeframe built on read is the newest built bar (the running one, marked incomplete) and
also carries `complete` and `base_bars` (as on /history). A corrected bar (a vendor re-sent
it with late trades) arrives again with `revision: true`, its `version` (2 for the first
correction) and the `previous_as_of` of the version it replaces.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

import msgspec

from market_data.records import SYMBOL_REGEX, is_valid_symbol
from market_data.timeframes import TIMEFRAME_PATTERN, TIMEFRAMES_TEXT

DEFAULT_INTERVALS: tuple[str, ...] = ("1m",)
MAX_LIST_ITEMS = 512
"""Most entries a request's list may hold before it is refused at decode time."""

# Close codes (1000-1015 are RFC 6455; 4000-4999 are ours).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
CLOSE_TOO_SLOW = 4008
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
_CLOSE_FOR_CODE = {"not_found": CLOSE_NOT_FOUND, "unavailable": CLOSE_TRY_LATER, "limit": CLOSE_POLICY}

_PATTERN_RE = re.compile(rf"^(?:\*|{SYMBOL_REGEX}\*)$")
TICKER_RULE = "1-15 of A-Z, 0-9, '.', '-'"
"""What a ticker is, as refusals say it."""

RequestId = Annotated[str, msgspec.Meta(max_length=64)] | int
Names = Annotated[list[str], msgspec.Meta(max_length=MAX_LIST_ITEMS)]
Timeframes = Annotated[
    list[Annotated[str, msgspec.Meta(pattern=TIMEFRAME_PATTERN)]], msgspec.Meta(max_length=8)
]


# ------------------------------------------------------------------------------------------------
# client -> server
# ------------------------------------------------------------------------------------------------
class _Request(msgspec.Struct, tag_field="action", forbid_unknown_fields=True, kw_only=True):
    id: RequestId | None = None


class Subscribe(_Request, tag="subscribe"):
    bars: Names = []
    quotes: Names = []
    intervals: Timeframes | None = None


class Unsubscribe(_Request, tag="unsubscribe"):
    bars: Names = []
    quotes: Names = []
    intervals: Timeframes | None = None
    all: bool = False


class Ping(_Request, tag="ping"):
    pass


ClientRequest = Subscribe | Unsubscribe | Ping
ACTIONS = ("subscribe", "unsubscribe", "ping")
_REQUEST_DECODER = msgspec.json.Decoder(ClientRequest)


class Problem(msgspec.Struct, frozen=True):
    """Why a request is refused: the field (`bars[2]`, `action`, ...) and a sentence."""

    parameter: str
    detail: str
    code: str = "invalid"


def _field_of(msgspec_path: str) -> str:
    """'$.bars[2]' -> 'bars[2]'; '$' -> 'message'."""
    rest = msgspec_path.removeprefix("$").removeprefix(".")
    return rest or "message"


def decode_request(text: str) -> ClientRequest | Problem:
    """The request in a text frame, or the Problem naming what is wrong with it."""
    try:
        return _REQUEST_DECODER.decode(text)
    except msgspec.ValidationError as exc:
        reason, sep, where = str(exc).rpartition(" - at `")
        field = _field_of(where.rstrip("`")) if sep else "message"
        reason = reason if sep else str(exc)
        unknown = re.fullmatch(r"Object contains unknown field `(.+)`", reason)
        if unknown:
            name = unknown.group(1)[:40]
            return Problem(name if field == "message" else f"{field}.{name}", f"{name}: unknown field")
        if reason == "Object missing required field `action`":
            return Problem("action", f"action: required, one of {', '.join(ACTIONS)}")
        if field == "action":
            return Problem("action", f"action: unknown action; expected one of {', '.join(ACTIONS)}")
        if field.startswith("intervals"):
            why = "not a timeframe" if reason.startswith("Expected `str` matching") else reason
            return Problem(field, f"{field}: {why}; intervals are {TIMEFRAMES_TEXT}")
        if field == "message":
            return Problem("message", f"message: expected a JSON object with an `action`; {reason}")
        return Problem(field, f"{field}: {reason}")
    except msgspec.DecodeError as exc:
        return Problem("message", f"message: not valid JSON ({exc})")


def normalize_patterns(names: list[str], field: str) -> list[str] | Problem:
    """Upper-cased, de-duplicated tickers and patterns of a request list, in order."""
    out: dict[str, None] = {}
    for i, raw in enumerate(names):
        name = raw.strip().upper()
        if not (is_valid_symbol(name) or _PATTERN_RE.match(name)):
            return Problem(
                f"{field}[{i}]",
                f"{field}[{i}]: {raw[:20]!r} is neither a ticker ({TICKER_RULE}) "
                "nor a pattern ('*' or a ticker prefix ending in '*', e.g. 'BRK.*')",
            )
        out[name] = None
    return list(out)


def is_pattern(name: str) -> bool:
    return name.endswith("*")


def pattern_prefix(name: str) -> str:
    """'GEN*' -> 'GEN', '*' -> '' (the prefix every matching symbol starts with)."""
    return name[:-1]


def normalize_symbol(raw: str) -> str | None:
    """An upper-cased ticker, or None when `raw` is not one."""
    name = raw.strip().upper()
    return name if is_valid_symbol(name) else None


# ------------------------------------------------------------------------------------------------
# server -> client
# ------------------------------------------------------------------------------------------------
class _Message(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class _SubscriptionReply(_Message):
    bars: list[str]
    quotes: list[str]
    intervals: list[str]
    subscriptions: int
    """Distinct tickers and patterns this connection now follows (bars and quotes together)."""
    id: str | int | None = None


class Subscribed(_SubscriptionReply, tag="subscribed"):
    pass


class Unsubscribed(_SubscriptionReply, tag="unsubscribed"):
    pass


class Snapshot(_Message, tag="snapshot"):
    bars: list[msgspec.Raw]
    """The newest bar of each subscribed (symbol, interval) that has one."""
    quotes: list[msgspec.Raw]
    """The newest quote of each subscribed symbol that has one."""
    truncated: bool = False
    """True when a pattern matched more symbols than one snapshot holds."""
    id: str | int | None = None


class Pong(_Message, tag="pong"):
    ts: float
    id: str | int | None = None


class Heartbeat(_Message, tag="heartbeat"):
    ts: float
    dropped: int
    """Live messages this connection has lost so far (its backlog was full)."""


class Resync(_Message, tag="resync"):
    reason: str


class ErrorMessage(_Message, tag="error"):
    code: str
    """invalid | not_found | limit | rate_limited | unavailable"""
    detail: str
    parameter: str | None = None
    id: str | int | None = None


_encode = msgspec.json.Encoder().encode


def encode(message: _Message) -> str:
    return _encode(message).decode()


def close_code_for(problem: Problem) -> int:
    """The close code of a connection ended by `problem` (the per-symbol socket's refusals)."""
    return _CLOSE_FOR_CODE.get(problem.code, CLOSE_BAD_REQUEST)


def error_text(problem: Problem, request_id: str | int | None = None) -> str:
    return encode(
        ErrorMessage(id=request_id, code=problem.code, parameter=problem.parameter, detail=problem.detail)
    )


def heartbeat_text(dropped: int) -> str:
    return encode(Heartbeat(ts=round(time.time(), 3), dropped=dropped))
