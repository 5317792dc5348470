"""What the write paths tell listeners through `pg_notify`: channels, payloads, the SQL that builds them.

New bars and quotes are notified on `md_bars` / `md_quotes` in the transaction that stores
them; the API forwards each payload to WebSocket clients as it is, so the payload is the wire
format. Postgres builds it (`payload_json`) from the fields of `BarNotification` /
`QuoteNotification`, in their order, and the API's snapshots build their entries the same
way. A policy activation notifies `md_policy` with the new version number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from market_data.records import Interval

BAR_CHANNEL = "md_bars"
QUOTE_CHANNEL = "md_quotes"
POLICY_CHANNEL = "md_policy"

NOTIFIED_AT = "extract(epoch FROM clock_timestamp())"
"""`notified_at`: epoch seconds when the notification was built (clients measure delay from it)."""


class BarNotification(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="bar"):
    """The payload of `md_bars`: the newest stored version of a bar."""

    symbol: str
    interval: Interval
    ts: datetime
    as_of: datetime
    provider: str
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float | None
    notified_at: float | None = None
    """Absent from snapshot entries."""


class QuoteNotification(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="quote"):
    """The payload of `md_quotes`: a newly stored quote."""

    symbol: str
    ts: datetime
    provider: str
    last: float
    bid: float | None
    ask: float | None
    bid_size: int | None
    ask_size: int | None
    notified_at: float | None = None
    """Absent from snapshot entries."""


Notification = BarNotification | QuoteNotification
PAYLOADS: dict[str, type[Notification]] = {"bar": BarNotification, "quote": QuoteNotification}


def payload_fields(kind: Literal["bar", "quote"], *, omit: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The stored columns a `kind` payload carries, in payload order (without `notified_at`)."""
    skip = {"notified_at", *omit}
    return tuple(f.name for f in msgspec.structs.fields(PAYLOADS[kind]) if f.name not in skip)


def payload_json(
    kind: Literal["bar", "quote"], *, table: str = "", notified: bool = True, **exprs: str
) -> str:
    """`json_build_object('type', kind, <field>, <column>, ...)::text`: a payload built in SQL.

    Args:
        table: qualifies each column (`bars` -> `bars.symbol`).
        notified: add `notified_at` (a live notification; snapshot entries have none).
        exprs: an SQL expression for a field that is not read from its column.
    """
    prefix = f"{table}." if table else ""
    pairs = [f"'type', '{kind}'"]
    pairs += [f"'{f}', {exprs.pop(f, prefix + f)}" for f in payload_fields(kind)]
    if exprs:
        raise ValueError(f"not fields of a {kind} payload: {', '.join(sorted(exprs))}")
    if notified:
        pairs.append(f"'notified_at', {NOTIFIED_AT}")
    return f"json_build_object({', '.join(pairs)})::text"


class Routing(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of any payload that route it to subscribers; the rest is forwarded untouched.

    Decoding only these keeps fan-out cheap (no datetimes or floats parsed per message).
    """

    type: str
    symbol: str
    interval: str | None = None
    notified_at: float | None = None


ROUTING_DECODER = msgspec.json.Decoder(Routing)
