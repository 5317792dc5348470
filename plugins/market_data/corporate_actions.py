"""Corporate actions, point in time: splits, cash dividends, ticker changes and delistings.

Providers report actions (`CorporateAction`, by ticker); the store keeps them per security
(`securities.py`) as append-only versions (`corporate_actions` table, sql/009): each version
says which provider reported it and when we learned it (`as_of`). A revision (a dividend
amount corrected) or a cancellation is a new version of the same action (`action_key`: the
security, the kind and the ex-date), never an overwrite, so a read "as of T" sees exactly the
actions known at T (`known_actions`).

An action takes effect at 00:00 UTC of its ex-date (`effective_ns`): a daily bar is stamped
with its session date at 00:00 UTC and every intraday bar of that session starts after it,
so the bars "before the ex-date" are exactly those with `ts` before that instant.

A newly stored version is notified on `md_corporate_actions` in the transaction that stores
it (`notifications.ActionNotification`); the API forwards it to WebSocket clients.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec

from market_data import securities
from market_data.notifications import ACTION_CHANNEL, payload_json
from market_data.records import Symbol


class ActionKind(enum.StrEnum):
    SPLIT = "split"
    CASH_DIVIDEND = "cash_dividend"
    TICKER_CHANGE = "ticker_change"
    DELISTING = "delisting"


class CorporateAction(msgspec.Struct, frozen=True, kw_only=True):
    """One action as a provider reports it, by the ticker the security had on the ex-date.

    A split of `split_to` new shares for `split_from` old ones (AAPL 2020: 4 for 1); a cash
    dividend of `amount` per share in `currency`, paid to holders on `record_date`, on
    `pay_date`; a ticker change from `old_ticker` to `new_ticker` (`symbol`: either); a delisting.
    """

    symbol: Symbol
    kind: ActionKind
    ex_date: date
    """Ex-date (splits and dividends), effective date (ticker changes, delistings)."""
    provider: str
    split_from: float | None = None
    split_to: float | None = None
    amount: float | None = None
    currency: str | None = None
    record_date: date | None = None
    pay_date: date | None = None
    old_ticker: str | None = None
    new_ticker: str | None = None
    cancelled: bool = False

    @property
    def ratio(self) -> float:
        """New shares per old share (a split); 1 for any other kind."""
        if self.kind is ActionKind.SPLIT and self.split_from and self.split_to:
            return self.split_to / self.split_from
        return 1.0

    def cancellation(self, provider: str | None = None) -> CorporateAction:
        """This action, cancelled (stored as its next version)."""
        return msgspec.structs.replace(self, cancelled=True, provider=provider or self.provider)


class StoredAction(msgspec.Struct, frozen=True, kw_only=True):
    """A version of an action as stored: the action, its security and when we learned it."""

    action_key: str
    security_id: int
    as_of: datetime
    action: CorporateAction


def effective_ns(ex_date: date) -> int:
    """The instant (ns since the epoch) an action takes effect: its ex-date at 00:00 UTC."""
    return int(datetime(ex_date.year, ex_date.month, ex_date.day, tzinfo=UTC).timestamp()) * 1_000_000_000


def action_key(security_id: int, kind: ActionKind, ex_date: date) -> str:
    """The identity of an action across its versions."""
    return f"{security_id}:{kind.value}:{ex_date.isoformat()}"


_VALUES = (
    "provider, cancelled, split_from, split_to, amount, currency, record_date, pay_date, "
    "old_ticker, new_ticker"
)
"""The stored fields of a version besides its identity, in SQL (`_A_VALUES`: the same of `a`)."""
_A_VALUES = (
    "a.provider, a.cancelled, a.split_from, a.split_to, a.amount, a.currency, a.record_date, a.pay_date, "
    "a.old_ticker, a.new_ticker"
)
_VALUE_COLUMNS = tuple(_VALUES.split(", "))
_COLUMNS = _VALUE_COLUMNS[2:]
"""What a report states besides its provider and whether it cancels."""

_LATEST = f"""
SELECT DISTINCT ON (action_key) action_key, as_of, {_VALUES}
FROM corporate_actions WHERE action_key = ANY($1::text[]) ORDER BY action_key, as_of DESC"""

_PAYLOAD = payload_json(
    "corporate_action",
    symbol="(SELECT s.storage_symbol FROM securities s WHERE s.security_id = corporate_actions.security_id)",
)
"""The `md_corporate_actions` payload of an inserted row (`ActionNotification`)."""

_INSERT = f"""
INSERT INTO corporate_actions (action_key, as_of, security_id, kind, ex_date, {_VALUES})
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::date[], $6::text[],
    $7::boolean[], $8::float8[], $9::float8[], $10::float8[], $11::text[], $12::date[], $13::date[],
    $14::text[], $15::text[])
RETURNING action_key, security_id, as_of, {_PAYLOAD} AS payload"""


def _values(a: CorporateAction) -> tuple[object, ...]:
    return (a.provider, a.cancelled, *(getattr(a, c) for c in _COLUMNS))


def _adds_to(a: CorporateAction, latest: asyncpg.Record | None) -> bool:
    """Whether report `a` says something the latest version does not: it is new, its
    cancellation differs, or a field it states differs. A field the report leaves out (Yahoo
    gives no record date) is not a difference, and neither is the provider: the same action
    from a second provider stores nothing, so providers that state it alike never alternate."""
    if latest is None or latest["cancelled"] != a.cancelled:
        return True
    return any(getattr(a, c) is not None and getattr(a, c) != latest[c] for c in _COLUMNS)


class UnknownSecurity(ValueError):
    """An action names a ticker no security of the master had on its ex-date."""


async def _security_of(conn: asyncpg.Connection, a: CorporateAction) -> securities.Security | None:
    """The security an action is of: by its ticker on the ex-date; a ticker change by its new
    ticker, else (a master that still knows only the old one) by the old ticker the day before."""
    if a.kind is not ActionKind.TICKER_CHANGE:
        return await securities.security_of(conn, a.symbol, a.ex_date)
    found = await securities.security_of(conn, a.new_ticker or a.symbol, a.ex_date)
    if found is None and a.old_ticker:
        found = await securities.security_of(conn, a.old_ticker, a.ex_date - timedelta(days=1))
    return found


async def record_actions(
    conn: asyncpg.Connection, actions: list[CorporateAction], as_of: datetime
) -> list[StoredAction]:
    """Store each action that is new or adds to its latest version (`_adds_to`), as a version at `as_of`.

    A ticker change also updates the security's ticker history. Runs in one transaction; each
    stored version is notified on `md_corporate_actions` when it commits.

    Returns:
        The versions stored now (empty when every action was known as reported).

    Raises:
        UnknownSecurity: an action's ticker matches no security on its ex-date (nothing is stored).
    """
    async with conn.transaction():
        resolved: dict[str, tuple[int, CorporateAction]] = {}
        for a in actions:
            sec = await _security_of(conn, a)
            if sec is None:
                raise UnknownSecurity(f"{a.symbol}: no security had this ticker on {a.ex_date}")
            resolved[action_key(sec.security_id, a.kind, a.ex_date)] = (sec.security_id, a)
        latest = {r["action_key"]: r for r in await conn.fetch(_LATEST, list(resolved))}
        new = {k: v for k, v in resolved.items() if _adds_to(v[1], latest.get(k))}
        if not new:
            return []
        cols: list[list[object]] = [[] for _ in range(15)]
        for key, (sid, a) in new.items():
            for col, value in zip(cols, (key, as_of, sid, a.kind.value, a.ex_date, *_values(a)), strict=True):
                col.append(value)
        rows = await conn.fetch(_INSERT, *cols)
        for sid, a in new.values():
            if a.kind is ActionKind.TICKER_CHANGE and not a.cancelled and a.old_ticker and a.new_ticker:
                await securities.record_ticker_change(conn, sid, a.old_ticker, a.new_ticker, a.ex_date)
        for r in rows:
            await conn.execute("SELECT pg_notify($1, $2)", ACTION_CHANNEL, r["payload"])
        return [
            StoredAction(
                action_key=r["action_key"],
                security_id=r["security_id"],
                as_of=r["as_of"],
                action=new[r["action_key"]][1],
            )
            for r in rows
        ]


_KNOWN = f"""
SELECT * FROM (
    SELECT DISTINCT ON (a.action_key) a.action_key, a.security_id, a.as_of, a.kind, a.ex_date,
           t.ticker AS symbol, {_A_VALUES}
    FROM corporate_actions a
    LEFT JOIN LATERAL (
        SELECT ticker FROM security_tickers st
        WHERE st.security_id = a.security_id AND st.valid_from <= a.ex_date
        ORDER BY st.valid_from DESC LIMIT 1
    ) t ON true
    WHERE a.security_id = ANY($1::bigint[]) AND a.as_of <= $2
      AND ($3::text[] IS NULL OR a.kind = ANY($3::text[]))
    ORDER BY a.action_key, a.as_of DESC
) v WHERE $4 OR NOT cancelled ORDER BY ex_date, action_key"""


def _stored(r: asyncpg.Record) -> StoredAction:
    fields = {c: r[c] for c in ("ex_date", *_VALUE_COLUMNS)}
    return StoredAction(
        action_key=r["action_key"],
        security_id=r["security_id"],
        as_of=r["as_of"],
        action=CorporateAction(symbol=r["symbol"] or "UNKNOWN", kind=ActionKind(r["kind"]), **fields),
    )


async def known_actions(
    conn: asyncpg.Connection | asyncpg.Pool,
    security_ids: list[int],
    as_of: datetime,
    *,
    kinds: list[ActionKind] | None = None,
    with_cancelled: bool = False,
) -> list[StoredAction]:
    """The version known at `as_of` of each action of `security_ids`, by ex-date.

    Args:
        kinds: only these kinds (default: all).
        with_cancelled: include actions whose known version is a cancellation.
    """
    kind_values = [k.value for k in kinds] if kinds is not None else None
    rows = await conn.fetch(_KNOWN, security_ids, as_of, kind_values, with_cancelled)
    return [_stored(r) for r in rows]


_LEARNED_SINCE = f"""
SELECT a.action_key, a.security_id, a.as_of, a.kind, a.ex_date, s.storage_symbol AS symbol,
       {_A_VALUES}
FROM corporate_actions a JOIN securities s USING (security_id)
WHERE (a.as_of > $1 OR (a.as_of = $1 AND a.action_key > $2)) AND a.as_of <= $3
ORDER BY a.as_of, a.action_key LIMIT $4"""


async def learned_since(
    conn: asyncpg.Connection | asyncpg.Pool,
    since: datetime,
    until: datetime,
    limit: int,
    *,
    after_key: str | None = None,
) -> list[StoredAction]:
    """Versions learned in (since, until], oldest first, at most `limit` (a feed of every security).

    `after_key` continues a page that ended inside the versions learned at `since`: those of
    them with a later `action_key` follow too.
    """
    return [_stored(r) for r in await conn.fetch(_LEARNED_SINCE, since, after_key, until, limit)]
