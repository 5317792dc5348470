"""What the write paths tell listeners through `pg_notify`: channels, payloads, the SQL that builds them.

New bars and quotes are notified on `md_bars` / `md_quotes` in the transaction that stores
them; the API forwards each payload to WebSocket clients as it is, so the payload is the wire
format. Postgres builds it (`payload_json`) from the fields of `BarNotification` /
`QuoteNotification`, in their order, and the API's snapshots build their entries the same
way. A policy activation notifies `md_policy` with the new version number. A corporate action
learned (a new version: new, revised or cancelled) notifies `md_corporate_actions`
(`ActionNotification`, built by `corporate_actions.record_actions`); the API forwards it to the
WebSocket clients that follow the symbol.

A bar payload also says which version of the bar it is (`version`, `revision`,
`previous_as_of`): a vendor that corrects a bar after the fact (late trades) makes the store
add a version, and listeners get it marked as a revision. These fields are not stored
columns: every builder of a bar payload says how it knows them (`FIRST_VERSION` for a bar
stored for the first time, `STORED_VERSION` for a row read from `bars`; `payload_json`'s
`versions`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from market_data.records import Interval

BAR_CHANNEL = "md_bars"
QUOTE_CHANNEL = "md_quotes"
POLICY_CHANNEL = "md_policy"
ACTION_CHANNEL = "md_corporate_actions"

NOTIFIED_AT = "extract(epoch FROM clock_timestamp())"
"""`notified_at`: epoch seconds when the notification was built (clients measure delay from it)."""


class BarNotification(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", tag="bar"
):
    """The payload of `md_bars`: a newly stored version of a bar (the newest of its (symbol,
    interval) in a write, or a correction of an earlier bar)."""

    symbol: str
    interval: Interval
    ts: datetime
    as_of: datetime
    provider: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: int | None
    version: int
    """1 for the first version of the bar, 2 for its first revision, and so on."""
    revision: bool
    """Whether this version replaces an earlier one (a correction: `version` > 1)."""
    previous_as_of: datetime | None
    """`as_of` of the version this one replaces; null for version 1."""
    notified_at: float | None = None
    """Absent from snapshot entries (encoded without it when None)."""


class QuoteNotification(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", tag="quote"
):
    """The payload of `md_quotes`: a newly stored quote."""

    symbol: str
    ts: datetime
    provider: str
    last: float
    bid: float | None
    ask: float | None
    bid_size: float | None
    ask_size: float | None
    notified_at: float | None = None
    """Absent from snapshot entries (encoded without it when None)."""


class ActionNotification(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="corporate_action"):
    """The payload of `md_corporate_actions`: a newly learned version of a corporate action
    (`corporate_actions.record_actions`)."""

    symbol: str
    """The storage symbol of the security (the universe symbol its bars are read by)."""
    security_id: int
    action_key: str
    kind: str
    ex_date: str
    as_of: datetime
    provider: str
    cancelled: bool
    split_from: float | None
    split_to: float | None
    amount: float | None
    currency: str | None
    record_date: str | None
    pay_date: str | None
    old_ticker: str | None
    new_ticker: str | None
    notified_at: float | None = None


Notification = BarNotification | QuoteNotification | ActionNotification
PAYLOADS: dict[str, type[Notification]] = {
    "bar": BarNotification,
    "quote": QuoteNotification,
    "corporate_action": ActionNotification,
}
DERIVED_FIELDS: dict[str, tuple[str, ...]] = {
    "bar": ("version", "revision", "previous_as_of"),
    "quote": (),
    "corporate_action": ("symbol",),
}
"""Payload fields that are not stored columns: each builder gives their SQL expressions."""

FIRST_VERSION = {"version": "1", "revision": "false", "previous_as_of": "NULL"}
"""The version fields of a bar stored for the first time (no version of it existed)."""

_SAME_BAR = "v.symbol = bars.symbol AND v.interval = bars.interval AND v.ts = bars.ts"
STORED_VERSION = {
    "version": f"(SELECT count(*) FROM bars v WHERE {_SAME_BAR} AND v.as_of <= bars.as_of)",
    "revision": f"EXISTS (SELECT 1 FROM bars v WHERE {_SAME_BAR} AND v.as_of < bars.as_of)",
    "previous_as_of": f"(SELECT max(v.as_of) FROM bars v WHERE {_SAME_BAR} AND v.as_of < bars.as_of)",
}
"""The version fields of a row of `bars` (read as `bars`): one index probe each."""


PayloadKind = Literal["bar", "quote", "corporate_action"]


def payload_fields(kind: PayloadKind, *, omit: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The stored columns a `kind` payload carries, in payload order (without `notified_at` and
    the derived fields)."""
    skip = {"notified_at", *DERIVED_FIELDS[kind], *omit}
    return tuple(f.name for f in msgspec.structs.fields(PAYLOADS[kind]) if f.name not in skip)


def payload_json(
    kind: PayloadKind,
    *,
    table: str = "",
    notified: bool = True,
    versions: Literal["first", "stored"] | None = None,
    **exprs: str,
) -> str:
    """`json_build_object('type', kind, <field>, <column>, ...)::text`: a payload built in SQL.

    Args:
        table: qualifies each column (`bars` -> `bars.symbol`).
        notified: add `notified_at` (a live notification; snapshot entries have none).
        versions: a bar's version fields as `FIRST_VERSION` ("first") or `STORED_VERSION`
            ("stored") give them.
        exprs: an SQL expression for a field that is not read from its column; every derived
            field (`DERIVED_FIELDS`) needs one, here or through `versions`.

    Raises:
        ValueError: a derived field without an expression, or an expression for no field.
    """
    prefix = f"{table}." if table else ""
    known = {"first": FIRST_VERSION, "stored": STORED_VERSION}.get(versions or "", {})
    exprs = {**known, **exprs}
    missing = [f for f in DERIVED_FIELDS[kind] if f not in exprs]
    if missing:
        raise ValueError(f"a {kind} payload needs expressions for {', '.join(missing)}")
    pairs = [f"'type', '{kind}'"]
    pairs += [
        f"'{f.name}', {exprs.pop(f.name, prefix + f.name)}"
        for f in msgspec.structs.fields(PAYLOADS[kind])
        if f.name != "notified_at"
    ]
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
