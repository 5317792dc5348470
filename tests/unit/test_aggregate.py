"""Aggregation: the OHLCV rules, completeness, and that building composes (1h from 1m = 1h from 15m)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data import calendar
from market_data.aggregate import READ_AS_STORED, Bars, aggregate, newest_versions
from market_data.bar_reads import build_bars
from market_data.records import Interval
from market_data.timeframes import Align, bucket_grid_ns, bucket_starts_ns, parse_timeframe

MIC = "XNYS"
DAY_START = calendar.to_ns(datetime(2025, 11, 28, tzinfo=UTC))  # the early close: 14:30-18:00 UTC
DAY_END = calendar.to_ns(datetime(2025, 11, 29, tzinfo=UTC))
MINUTES = calendar.expected_bar_starts_ns(MIC, Interval.M1, DAY_START, DAY_END)
H1, M15, D1 = parse_timeframe("1h"), parse_timeframe("15m"), parse_timeframe("1d")


def bars(
    ts: np.ndarray,
    *,
    open: list[float],
    high: list[float],
    low: list[float],
    close: list[float],
    volume: list[float],
    vwap: list[float],
    trade_count: list[float],
    provider: list[str] | None = None,
    as_of: list[int] | None = None,
    complete: list[bool] | None = None,
) -> Bars:
    n = len(ts)
    return Bars(
        ts=np.asarray(ts, dtype=np.int64),
        open=np.asarray(open, dtype=float),
        high=np.asarray(high, dtype=float),
        low=np.asarray(low, dtype=float),
        close=np.asarray(close, dtype=float),
        volume=np.asarray(volume, dtype=float),
        vwap=np.asarray(vwap, dtype=float),
        trade_count=np.asarray(trade_count, dtype=float),
        provider=np.asarray(provider or ["synthetic"] * n, dtype=object),
        as_of=np.asarray(as_of or [0] * n, dtype=np.int64),
        complete=np.asarray(complete or [True] * n, dtype=bool),
        base_bars=np.full(n, READ_AS_STORED, dtype=np.int64),
    )


def test_open_first_high_max_low_min_close_last_sums_and_weighted_vwap() -> None:
    base = bars(
        MINUTES[:3],
        open=[10, 11, 12],
        high=[10.5, 13, 12.5],
        low=[9.5, 10.8, 9.0],
        close=[11, 12, 12.2],
        volume=[100, 300, 0],
        vwap=[10.2, 11.9, 12.1],
        trade_count=[5, 7, 0],
        provider=["a", "b", "a"],
        as_of=[3, 9, 4],
        complete=[True, True, True],
    )
    out = aggregate(base, np.full(3, MINUTES[0]))
    assert len(out) == 1
    assert (out.open[0], out.high[0], out.low[0], out.close[0]) == (10, 13, 9.0, 12.2)
    assert out.volume[0] == 400 and out.trade_count[0] == 12 and out.base_bars[0] == 3
    assert out.vwap[0] == (10.2 * 100 + 11.9 * 300) / 400
    assert out.provider[0] == "a+b" and out.as_of[0] == 9 and out.complete[0]


def test_an_unknown_vwap_or_trade_count_makes_the_sum_unknown_and_fractional_volume_adds_up() -> None:
    base = bars(
        MINUTES[:2],
        open=[1, 1],
        high=[1, 1],
        low=[1, 1],
        close=[1, 1],
        volume=[0.25, 1.5],
        vwap=[1.0, np.nan],
        trade_count=[np.nan, 2],
    )
    out = aggregate(base, np.full(2, MINUTES[0]))
    assert out.volume[0] == 1.75 and np.isnan(out.vwap[0]) and np.isnan(out.trade_count[0])
    silent = aggregate(
        bars(MINUTES[:1], open=[1], high=[1], low=[1], close=[1], volume=[0], vwap=[1], trade_count=[0]),
        MINUTES[:1],
    )
    assert np.isnan(silent.vwap[0])  # no volume, no volume-weighted price


def test_one_incomplete_base_bar_makes_its_bar_incomplete() -> None:
    base = bars(
        MINUTES[:2],
        open=[1, 1],
        high=[1, 1],
        low=[1, 1],
        close=[1, 1],
        volume=[1, 1],
        vwap=[1, 1],
        trade_count=[1, 1],
        complete=[True, False],
    )
    assert not aggregate(base, np.full(2, MINUTES[0])).complete[0]


def test_newest_versions_keeps_the_last_version_of_each_bar() -> None:
    base = bars(
        np.array([1, 1, 2]),
        open=[1, 2, 3],
        high=[1, 2, 3],
        low=[1, 2, 3],
        close=[1, 2, 3],
        volume=[1, 1, 1],
        vwap=[1, 1, 1],
        trade_count=[1, 1, 1],
        as_of=[5, 6, 5],
    )
    assert newest_versions(base).open.tolist() == [2, 3]


def synthetic_minutes(rng: np.random.Generator, present: np.ndarray) -> Bars:
    ts = MINUTES[present]
    n = ts.size
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = close + rng.normal(0, 0.05, n)
    high = np.maximum(open_, close) + rng.random(n)
    low = np.minimum(open_, close) - rng.random(n)
    vwap = np.where(rng.random(n) < 0.05, np.nan, (high + low) / 2)
    return Bars(
        ts=ts,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=rng.integers(0, 5000, n).astype(float),
        vwap=vwap,
        trade_count=np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 50, n).astype(float)),
        provider=rng.choice(np.array(["synthetic", "alpaca"], dtype=object), n, p=[0.9, 0.1]),
        as_of=rng.integers(0, 1000, n),
        complete=rng.random(n) > 0.02,
        base_bars=np.full(n, READ_AS_STORED, dtype=np.int64),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    missing_share=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]),
    empty_share=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_1h_from_1m_equals_1h_from_a_built_15m(seed: int, missing_share: float, empty_share: float) -> None:
    rng = np.random.default_rng(seed)
    absent = rng.random(MINUTES.size) < missing_share
    confirmed = absent & (rng.random(MINUTES.size) < empty_share)
    minutes = synthetic_minutes(rng, ~absent)
    empty = [(int(t), int(t) + 60_000_000_000) for t in MINUTES[confirmed]]

    direct = build_bars(MIC, H1, Align.SESSION, Interval.M1, minutes, MINUTES, empty)

    quarters = build_bars(MIC, M15, Align.SESSION, Interval.M1, minutes, MINUTES, empty)
    expected_quarters = bucket_grid_ns(MIC, M15, Align.SESSION, DAY_START, DAY_END)
    # a quarter with no stored minute whose minutes are all confirmed empty is itself confirmed empty
    quarter_of = bucket_starts_ns(MIC, M15, Align.SESSION, Interval.M1, MINUTES)
    empty_quarters = [
        (int(q), int(q) + 1)
        for q in expected_quarters
        if q not in quarters.ts and confirmed[quarter_of == q].all()
    ]
    via_quarters = build_bars(
        MIC, H1, Align.SESSION, Interval.M15, quarters, expected_quarters, empty_quarters
    )

    assert direct.ts.tolist() == via_quarters.ts.tolist()
    for column in ("open", "high", "low", "close", "volume", "trade_count", "as_of"):
        np.testing.assert_array_equal(getattr(direct, column), getattr(via_quarters, column), err_msg=column)
    np.testing.assert_allclose(direct.vwap, via_quarters.vwap, rtol=1e-12)
    assert direct.provider.tolist() == via_quarters.provider.tolist()
    assert direct.complete.tolist() == via_quarters.complete.tolist()
    hour_of_quarter = bucket_starts_ns(MIC, H1, Align.SESSION, Interval.M15, quarters.ts)
    minutes_per_hour = [int(quarters.base_bars[hour_of_quarter == h].sum()) for h in direct.ts]
    assert direct.base_bars.tolist() == minutes_per_hour


def test_a_bar_is_complete_when_every_minute_is_stored_or_confirmed_empty() -> None:
    rng = np.random.default_rng(7)
    present = np.ones(MINUTES.size, dtype=bool)
    present[[5, 70]] = False  # 14:35 (first hour) and 15:40 (second hour) are not stored
    minutes = synthetic_minutes(rng, present)
    minutes = Bars(
        **{**{f: getattr(minutes, f) for f in minutes.__slots__}, "complete": np.ones(present.sum(), bool)}
    )
    empty_1540 = [(int(MINUTES[70]), int(MINUTES[70]) + 60_000_000_000)]
    out = build_bars(MIC, H1, Align.SESSION, Interval.M1, minutes, MINUTES, empty_1540)
    assert out.complete.tolist() == [False, True, True, True]
    assert out.base_bars.tolist() == [59, 59, 60, 30]  # the early close: the last hour is 13:30-14:00 ET
    daily = build_bars(MIC, D1, Align.SESSION, Interval.M1, minutes, MINUTES, empty_1540)
    assert daily.base_bars.tolist() == [208] and daily.complete.tolist() == [False]
