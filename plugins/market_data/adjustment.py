"""Corporate-action adjustment of bars on read: `adjustment=raw|split|dividend|all`.

Bars are stored raw, as traded. A read may ask for them adjusted by the actions of their
security known at the read's `as_of` (`corporate_actions.known_actions`), so a backtest
standing on a date sees only what was known then:

- `split`: a bar before a split's ex-date has its prices divided by the ratio (new shares per
  old one) and its volume multiplied by it, so the series is in today's shares.
- `dividend`: the standard backward factor: a bar before a cash dividend's ex-date has its
  prices multiplied by `1 - amount / close`, `close` the close of the session before the
  ex-date (the last stored bar in the `REFERENCE_WINDOW` before it: of the daily bars when
  stored, else of the read's own stored interval) known at `as_of`; volume unchanged. A
  dividend without that close stored is listed, not applied (factor 1, `reference_close`
  null): a close weeks away would give a wrong factor.
- `all`: both. Factors of several actions multiply.

The set of actions a read applies is an `AdjustmentSet`: every action of the mode's kinds
known at `as_of` (not only those inside the page, so every page of one read has the same set),
with its factors and an `id` (a digest of the actions, their versions and factors), so two
reads can be compared. Adjustment runs on the base bars before aggregation
(`bar_reads.adjust_base_bars`), so a built bar is made of adjusted base bars.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec
import numpy as np

from market_data.aggregate import Bars
from market_data.corporate_actions import ActionKind, StoredAction, effective_ns, known_actions
from market_data.records import Interval


class Adjustment(enum.StrEnum):
    RAW = "raw"
    SPLIT = "split"
    DIVIDEND = "dividend"
    ALL = "all"

    @property
    def kinds(self) -> list[ActionKind]:
        split, dividend = (
            self in (Adjustment.SPLIT, Adjustment.ALL),
            self in (Adjustment.DIVIDEND, Adjustment.ALL),
        )
        return [k for k, on in ((ActionKind.SPLIT, split), (ActionKind.CASH_DIVIDEND, dividend)) if on]


ADJUSTMENTS_TEXT = (
    "`raw` (default: as traded), `split` (prices before a split divided by its ratio, volume multiplied), "
    "`dividend` (prices before a cash dividend's ex-date times 1 - dividend / the close before it), "
    "`all` (both)"
)


class AppliedAction(msgspec.Struct, frozen=True, kw_only=True):
    """One action of an adjustment set, with the factors it applies to the bars before `ex_date`."""

    action_key: str
    kind: str
    ex_date: date
    learned_at: datetime
    """`as_of` of the action's version applied (when it was learned)."""
    provider: str
    split_ratio: float | None = None
    amount: float | None = None
    currency: str | None = None
    reference_close: float | None = None
    """The close of the session before the ex-date a dividend's factor uses (null: not stored,
    so the dividend is not applied: `price_factor` 1)."""
    price_factor: float
    volume_factor: float


class AdjustmentSet(msgspec.Struct, frozen=True, kw_only=True):
    """The actions one adjusted read applies; `id` names the set (same id, same adjustment)."""

    mode: Adjustment
    id: str
    actions: list[AppliedAction]

    def apply(self, bars: Bars) -> Bars:
        """`bars` adjusted: each bar's prices times the price factors of the actions after it,
        its volume times their volume factors."""
        if not self.actions or len(bars) == 0:
            return bars
        eff = np.array([effective_ns(a.ex_date) for a in self.actions], dtype=np.int64)
        later = np.searchsorted(eff, bars.ts, side="right")
        if (later == eff.size).all():
            return bars
        price = np.append(np.cumprod([a.price_factor for a in self.actions][::-1])[::-1], 1.0)[later]
        volume = np.append(np.cumprod([a.volume_factor for a in self.actions][::-1])[::-1], 1.0)[later]
        return replace(
            bars,
            open=bars.open * price,
            high=bars.high * price,
            low=bars.low * price,
            close=bars.close * price,
            vwap=bars.vwap * price,
            volume=bars.volume * volume,
        )


REFERENCE_WINDOW = timedelta(days=7)
"""How far before an ex-date the session before it may lie (weekends, holidays)."""

# The last close in [ex - $5, ex) of each ex-date, known at $3: of the daily bars, else of interval $2.
_REFERENCE_CLOSES = """
SELECT coalesce(
    (SELECT close FROM bars WHERE symbol = $1 AND interval = '1d' AND ts < e.ex AND ts >= e.ex - $5::interval
     AND as_of <= $3 ORDER BY ts DESC, as_of DESC LIMIT 1),
    (SELECT close FROM bars WHERE symbol = $1 AND interval = $2 AND ts < e.ex AND ts >= e.ex - $5::interval
     AND as_of <= $3 ORDER BY ts DESC, as_of DESC LIMIT 1)) AS close
FROM unnest($4::timestamptz[]) WITH ORDINALITY AS e(ex, n) ORDER BY e.n"""


def _applied(stored: StoredAction, reference_close: float | None) -> AppliedAction:
    a = stored.action
    price = volume = 1.0
    if a.kind is ActionKind.SPLIT:
        price, volume = 1.0 / a.ratio, a.ratio
    elif a.kind is ActionKind.CASH_DIVIDEND and reference_close and a.amount and a.amount < reference_close:
        price = 1.0 - a.amount / reference_close
    return AppliedAction(
        action_key=stored.action_key,
        kind=a.kind.value,
        ex_date=a.ex_date,
        learned_at=stored.as_of,
        provider=a.provider,
        split_ratio=a.ratio if a.kind is ActionKind.SPLIT else None,
        amount=a.amount,
        currency=a.currency,
        reference_close=reference_close,
        price_factor=price,
        volume_factor=volume,
    )


def _set_id(mode: Adjustment, actions: list[AppliedAction]) -> str:
    h = hashlib.blake2b(mode.value.encode(), digest_size=8)
    for a in actions:
        h.update(
            f"|{a.action_key}@{a.learned_at.isoformat()}:{a.price_factor!r}:{a.volume_factor!r}".encode()
        )
    return "adj-" + h.hexdigest()


async def adjustment_set(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    security_id: int,
    symbol: str,
    interval: Interval,
    mode: Adjustment,
    as_of: datetime,
) -> AdjustmentSet:
    """The actions of `mode`'s kinds known at `as_of` for the security stored as `symbol`."""
    stored = await known_actions(conn, [security_id], as_of, kinds=mode.kinds) if mode.kinds else []
    dividends = [s for s in stored if s.action.kind is ActionKind.CASH_DIVIDEND]
    closes: dict[str, float | None] = {}
    if dividends:
        ex = [
            datetime(s.action.ex_date.year, s.action.ex_date.month, s.action.ex_date.day, tzinfo=UTC)
            for s in dividends
        ]
        rows = await conn.fetch(_REFERENCE_CLOSES, symbol, interval.value, as_of, ex, REFERENCE_WINDOW)
        closes = {s.action_key: r["close"] for s, r in zip(dividends, rows, strict=True)}
    actions = [_applied(s, closes.get(s.action_key)) for s in stored]
    return AdjustmentSet(mode=mode, id=_set_id(mode, actions), actions=actions)
