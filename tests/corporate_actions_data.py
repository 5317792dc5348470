"""Corporate actions the tests store: AAPL's 2020 split and dividend, MSFT's 2024 dividend."""

from __future__ import annotations

from datetime import UTC, date, datetime

from market_data.corporate_actions import ActionKind, CorporateAction

NOW = datetime(2026, 12, 1, tzinfo=UTC)
"""When the tests' synthetic bars are served (every bar of the years they read is complete)."""
AAPL_SPLIT = CorporateAction(
    symbol="AAPL",
    kind=ActionKind.SPLIT,
    ex_date=date(2020, 8, 31),
    provider="synthetic",
    split_from=1,
    split_to=4,
)
AAPL_DIVIDEND = CorporateAction(
    symbol="AAPL",
    kind=ActionKind.CASH_DIVIDEND,
    ex_date=date(2020, 8, 7),
    provider="synthetic",
    amount=0.82,
    currency="USD",
    record_date=date(2020, 8, 10),
    pay_date=date(2020, 8, 13),
)
MSFT_DIVIDEND = CorporateAction(
    symbol="MSFT",
    kind=ActionKind.CASH_DIVIDEND,
    ex_date=date(2024, 2, 14),
    provider="synthetic",
    amount=0.75,
    currency="USD",
    record_date=date(2024, 2, 15),
    pay_date=date(2024, 3, 14),
)
