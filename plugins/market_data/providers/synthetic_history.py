"""The corporate actions the synthetic provider serves: the real history of seeded tickers.

Splits: AAPL 7:1 (2014-06-09) and 4:1 (2020-08-31), NVDA 4:1 (2021-07-20) and 10:1
(2024-06-10), TSLA 5:1 (2020-08-31) and 3:1 (2022-08-25). Cash dividends: AAPL's and MSFT's
quarterly ones since 2020 / 2023 (ex-dates and amounts as declared; record and pay dates
approximate). Ticker change: FB to META on 2022-06-09.

The synthetic price path is the split-adjusted one (today's shares): `split_multiplier`
turns it into a raw series, so raw prices before a split are `ratio` times higher and raw
volumes `ratio` times lower, dropping at the ex-date the way a real raw series does.
Dividends do not move the synthetic path (a quarterly 0.25 on a 200 price is within its noise).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from market_data.corporate_actions import ActionKind, CorporateAction, effective_ns

_SPLITS = (
    ("AAPL", date(2014, 6, 9), 7),
    ("AAPL", date(2020, 8, 31), 4),
    ("NVDA", date(2021, 7, 20), 4),
    ("NVDA", date(2024, 6, 10), 10),
    ("TSLA", date(2020, 8, 31), 5),
    ("TSLA", date(2022, 8, 25), 3),
)
_DIVIDENDS = {
    "AAPL": (
        ("2020-02-07", 0.77),
        ("2020-05-08", 0.82),
        ("2020-08-07", 0.82),
        ("2020-11-06", 0.205),
        ("2021-02-05", 0.205),
        ("2021-05-07", 0.22),
        ("2021-08-06", 0.22),
        ("2021-11-05", 0.22),
        ("2022-02-04", 0.22),
        ("2022-05-06", 0.23),
        ("2022-08-05", 0.23),
        ("2022-11-04", 0.23),
        ("2023-02-10", 0.23),
        ("2023-05-12", 0.24),
        ("2023-08-11", 0.24),
        ("2023-11-10", 0.24),
        ("2024-02-09", 0.24),
        ("2024-05-10", 0.25),
        ("2024-08-12", 0.25),
        ("2024-11-08", 0.25),
        ("2025-02-10", 0.25),
        ("2025-05-12", 0.26),
        ("2025-08-11", 0.26),
        ("2025-11-10", 0.26),
    ),
    "MSFT": (
        ("2023-02-15", 0.68),
        ("2023-05-17", 0.68),
        ("2023-08-16", 0.68),
        ("2023-11-15", 0.75),
        ("2024-02-14", 0.75),
        ("2024-05-15", 0.75),
        ("2024-08-15", 0.75),
        ("2024-11-21", 0.83),
        ("2025-02-20", 0.83),
        ("2025-05-15", 0.83),
        ("2025-08-21", 0.83),
        ("2025-11-20", 0.91),
    ),
}
_TICKER_CHANGES = (("FB", "META", date(2022, 6, 9)),)


def synthetic_actions(provider: str) -> list[CorporateAction]:
    """Every action of the synthetic history, reported by `provider`, by ex-date."""
    out = [
        CorporateAction(
            symbol=s, kind=ActionKind.SPLIT, ex_date=d, provider=provider, split_from=1, split_to=r
        )
        for s, d, r in _SPLITS
    ]
    for symbol, rows in _DIVIDENDS.items():
        for ex, amount in rows:
            d = date.fromisoformat(ex)
            out.append(
                CorporateAction(
                    symbol=symbol,
                    kind=ActionKind.CASH_DIVIDEND,
                    ex_date=d,
                    provider=provider,
                    amount=amount,
                    currency="USD",
                    record_date=d + timedelta(days=3 if d.weekday() == 4 else 1),
                    pay_date=d + timedelta(days=7),
                )
            )
    out += [
        CorporateAction(
            symbol=new,
            kind=ActionKind.TICKER_CHANGE,
            ex_date=d,
            provider=provider,
            old_ticker=old,
            new_ticker=new,
        )
        for old, new, d in _TICKER_CHANGES
    ]
    return sorted(out, key=lambda a: (a.ex_date, a.symbol, a.kind.value))


_SPLIT_STEPS: dict[str, tuple[np.ndarray, np.ndarray]] = {}
for _symbol in {s for s, _, _ in _SPLITS}:
    _rows = sorted((effective_ns(d), float(r)) for s, d, r in _SPLITS if s == _symbol)
    _eff = np.array([e for e, _ in _rows], dtype=np.int64)
    # multiplier of a bar before the k-th split: the product of the ratios from the k-th on
    _later = np.append(np.cumprod([r for _, r in _rows][::-1])[::-1], 1.0)
    _SPLIT_STEPS[_symbol] = (_eff, _later)


def split_multiplier(symbol: str, starts_ns: np.ndarray) -> np.ndarray | None:
    """Raw over split-adjusted price of each bar start (the later splits' ratios); None: always 1."""
    steps = _SPLIT_STEPS.get(symbol)
    if steps is None:
        return None
    eff, later = steps
    return later[np.searchsorted(eff, starts_ns, side="right")]
