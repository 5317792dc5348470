"""Response bodies of the corporate-action endpoints."""

from __future__ import annotations

from datetime import date, datetime

from api.schemas import ResponseModel
from market_data.corporate_actions import StoredAction


class ActionOut(ResponseModel, kw_only=True):
    """One version of a corporate action."""

    action_key: str
    """The action's identity across its versions (security, kind, ex-date)."""
    security_id: int
    symbol: str
    """`/stocks/{symbol}/corporate-actions`: the ticker on the ex-date; the feed: the symbol to read
    the security's bars by."""
    kind: str
    """`split`, `cash_dividend`, `ticker_change` or `delisting`."""
    ex_date: date
    """Ex-date (splits, dividends) or effective date (ticker changes, delistings)."""
    learned_at: datetime
    """When this version was stored (its `as_of`)."""
    provider: str
    cancelled: bool
    """This version cancels the action (it no longer applies from `learned_at` on)."""
    split_from: float | None = None
    split_to: float | None = None
    """A split gives `split_to` new shares for `split_from` old ones (AAPL 2020: 1 -> 4)."""
    amount: float | None = None
    currency: str | None = None
    record_date: date | None = None
    pay_date: date | None = None
    old_ticker: str | None = None
    new_ticker: str | None = None


def action_out(s: StoredAction) -> ActionOut:
    a = s.action
    return ActionOut(
        action_key=s.action_key,
        security_id=s.security_id,
        symbol=a.symbol,
        kind=a.kind.value,
        ex_date=a.ex_date,
        learned_at=s.as_of,
        provider=a.provider,
        cancelled=a.cancelled,
        split_from=a.split_from,
        split_to=a.split_to,
        amount=a.amount,
        currency=a.currency,
        record_date=a.record_date,
        pay_date=a.pay_date,
        old_ticker=a.old_ticker,
        new_ticker=a.new_ticker,
    )


class TickerOut(ResponseModel, kw_only=True):
    ticker: str
    valid_from: date
    valid_to: date | None
    """Exclusive; null: the ticker today."""


class SymbolActionsResponse(ResponseModel, kw_only=True):
    symbol: str
    security_id: int
    tickers: list[TickerOut]
    """The security's ticker history, oldest first."""
    as_of: datetime
    actions: list[ActionOut]
    """The version of each action known at `as_of`, by ex-date (cancelled ones only when asked)."""


class ActionFeedResponse(ResponseModel, kw_only=True):
    since: datetime
    until: datetime
    """Versions learned in (since, until]; `until` is the time of the request."""
    count: int
    actions: list[ActionOut]
    """Oldest learned first."""
    next_since: datetime | None
    """Pass as `since` for the next page, with `next_after` as `after` (null: nothing more was
    learned before `until`)."""
    next_after: str | None
