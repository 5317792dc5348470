"""SLO computations on synthetic timelines with known gaps (no services).

Every case is built from the exchange calendar: the expected bars of a range, minus the bars a
case drops. Nights, weekends, holidays, early closes and lunch breaks hold no expected bars,
so they never make a gap or a lag.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from market_data import calendar
from market_data.gaps import EmptyRanges
from market_data.metrics import TaskMetrics
from market_data.policy.schema import Duration, SloPolicy
from market_data.records import Interval
from market_data.slo import (
    GapStat,
    gaps_by_symbol,
    lag_seconds,
    sample_seed,
    sample_symbols,
    violation_count,
    window_min_bars,
    window_start_ns,
)
from market_data.slo_samples import SloSample, assess, emit_slo_gauges

HOUR = timedelta(hours=1)
NS = 1_000_000_000


def ns(text: str) -> int:
    """'2026-11-23 14:30' (UTC) as int64 nanoseconds."""
    return calendar.to_ns(datetime.fromisoformat(text).replace(tzinfo=UTC))


def stored(mic: str, interval: Interval, start: str, end: str, *, drop: tuple[str, ...] = ()) -> np.ndarray:
    """Every expected bar of [start, end) except the dropped ones: what a symbol has stored."""
    bars = calendar.expected_bar_starts_ns(mic, interval, ns(start), ns(end))
    gone = np.array([ns(d) for d in drop], dtype=np.int64)
    assert np.isin(gone, bars).all(), "a dropped bar must be an expected one"
    return bars[~np.isin(bars, gone)]


def largest(mic: str, interval: Interval, present: np.ndarray, now: str, empty: EmptyRanges = ()) -> GapStat:
    """The largest gap of one symbol as sample_slo measures it: a 1h window, 2x threshold."""
    got = gaps_by_symbol(
        {"X": mic}, interval, {"X": present}, now_ns=ns(now), window=HOUR, multiplier=2.0, empty={"X": empty}
    )
    return got["X"]


def gap(mic: str, interval: Interval, present: np.ndarray, now: str, empty: EmptyRanges = ()) -> float:
    return largest(mic, interval, present, now, empty).seconds


# -- overnight and weekend ---------------------------------------------------------------------
# Monday 2026-11-23 14:40 UTC: NYSE open since 14:30 (10 bars today). The 1h window reaches back
# to hold 20 bars: the last 10 of Friday's session (20:50..20:59) are in it.
MON_0940_ET = "2026-11-23 14:40"


def test_window_takes_the_previous_session_in_trading_time() -> None:
    start = window_start_ns("XNYS", Interval.M1, ns(MON_0940_ET), HOUR, 20)
    assert start == ns("2026-11-20 20:50")


def test_a_gap_across_the_weekend_counts_only_trading_minutes() -> None:
    base = ("XNYS", Interval.M1)
    two = stored(*base, "2026-11-20 14:30", MON_0940_ET, drop=("2026-11-20 20:59", "2026-11-23 14:30"))
    assert gap(*base, two, MON_0940_ET) == 120.0  # not 2.7 days: two missing minutes, not a violation
    three = stored(
        *base,
        "2026-11-20 14:30",
        MON_0940_ET,
        drop=("2026-11-20 20:59", "2026-11-23 14:30", "2026-11-23 14:31"),
    )
    g = largest(*base, three, MON_0940_ET)
    assert (g.bars, g.seconds, g.start_ns) == (3, 180.0, ns("2026-11-20 20:59"))
    assert gap(*base, stored(*base, "2026-11-20 14:30", MON_0940_ET), MON_0940_ET) == 0.0


def test_missing_bars_before_the_window_and_after_the_newest_bar_are_not_gaps() -> None:
    base = ("XNYS", Interval.M1)
    early = stored(
        *base, "2026-11-20 14:30", MON_0940_ET, drop=tuple(f"2026-11-20 20:{m}" for m in range(40, 46))
    )
    assert gap(*base, early, MON_0940_ET) == 0.0  # 20:40..20:45 lie before the window (20:50)
    # The newest stored bar is 14:36: 14:37..14:39 are not ingested yet; the lag measures that.
    tail = stored(*base, "2026-11-20 14:30", "2026-11-23 14:37")
    assert gap(*base, tail, MON_0940_ET) == 0.0
    assert lag_seconds("XNYS", Interval.M1, tail[-1:], ns(MON_0940_ET)).tolist() == [180.0]
    # a run at the window's start is clipped to the window: 20:48..20:52 -> only 20:50..20:52
    clipped = stored(
        *base, "2026-11-20 14:30", MON_0940_ET, drop=tuple(f"2026-11-20 20:{m}" for m in range(48, 53))
    )
    assert gap(*base, clipped, MON_0940_ET) == 180.0


def test_nothing_stored_in_the_window_is_no_gap() -> None:
    assert gap("XNYS", Interval.M1, np.empty(0, dtype=np.int64), MON_0940_ET) == 0.0


# -- a holiday and an early close --------------------------------------------------------------
def test_thanksgiving_is_not_a_gap_for_daily_bars() -> None:
    # Thursday 2026-11-26 is an NYSE holiday; Friday 27 closes early (18:00 UTC).
    base = ("XNYS", Interval.D1)
    now = "2026-11-30 22:00"
    assert gap(*base, stored(*base, "2026-10-01", now), now) == 0.0
    two = stored(*base, "2026-10-01", now, drop=("2026-11-25", "2026-11-27"))
    assert gap(*base, two, now) == 2 * 86400.0  # Wednesday and Friday: adjacent sessions
    three = stored(*base, "2026-10-01", now, drop=("2026-11-24", "2026-11-25", "2026-11-27"))
    assert gap(*base, three, now) == 3 * 86400.0


def test_an_early_close_is_not_a_gap() -> None:
    # Friday 2026-11-27 closes at 18:00 UTC: no 1m bar is expected from 18:00 to Monday's open.
    m1 = ("XNYS", Interval.M1)
    now = "2026-11-30 14:35"
    assert gap(*m1, stored(*m1, "2026-11-27 14:30", now), now) == 0.0
    two = stored(*m1, "2026-11-27 14:30", now, drop=("2026-11-27 17:59", "2026-11-30 14:30"))
    assert gap(*m1, two, now) == 120.0
    # 1h bars: Friday's last bar (17:30) is half an hour long and still counts as one interval
    h1 = ("XNYS", Interval.H1)
    now = "2026-11-30 16:00"
    assert gap(*h1, stored(*h1, "2026-11-20", now), now) == 0.0
    three = stored(*h1, "2026-11-20", now, drop=("2026-11-27 15:30", "2026-11-27 16:30", "2026-11-27 17:30"))
    assert gap(*h1, three, now) == 3 * 3600.0


# -- a lunch break (Tokyo) ---------------------------------------------------------------------
def test_the_tokyo_lunch_break_is_not_a_gap() -> None:
    # XTKS 2026-11-24: 00:00-02:30 and 03:30-06:30 UTC. Monday 23 was a Japanese holiday.
    base = ("XTKS", Interval.M1)
    now = "2026-11-24 03:40"
    assert window_start_ns(*base, ns(now), HOUR, 20) == ns("2026-11-24 02:20")
    assert gap(*base, stored(*base, "2026-11-24 00:00", now), now) == 0.0
    two = stored(*base, "2026-11-24 00:00", now, drop=("2026-11-24 02:29", "2026-11-24 03:30"))
    assert gap(*base, two, now) == 120.0
    three = stored(
        *base, "2026-11-24 00:00", now, drop=("2026-11-24 02:28", "2026-11-24 02:29", "2026-11-24 03:30")
    )
    assert gap(*base, three, now) == 180.0
    # across the holiday weekend: Friday 20's last bar and Tuesday's first
    now = "2026-11-24 00:05"
    across = stored(*base, "2026-11-20 00:00", now, drop=("2026-11-20 06:29", "2026-11-24 00:00"))
    assert gap(*base, across, now) == 120.0


# -- confirmed-empty ranges --------------------------------------------------------------------
def test_confirmed_empty_ranges_are_not_gaps() -> None:
    base = ("XNYS", Interval.M1)
    now = "2026-11-23 16:00"
    present = stored(
        *base, "2026-11-23 14:30", now, drop=("2026-11-23 15:10", "2026-11-23 15:11", "2026-11-23 15:12")
    )
    assert gap(*base, present, now) == 180.0
    # 15:11 had no trades (confirmed): 15:10 and 15:12 are missing, two in a row of what is judged
    assert gap(*base, present, now, empty=[(ns("2026-11-23 15:11"), ns("2026-11-23 15:12"))]) == 120.0
    assert gap(*base, present, now, empty=[(ns("2026-11-23 15:10"), ns("2026-11-23 15:13"))]) == 0.0


# -- the violation rate over a set of symbols with known gaps ----------------------------------
def test_violation_rate_is_the_share_of_symbols_whose_largest_gap_exceeds_2x() -> None:
    now = "2026-11-23 16:00"  # NYSE open; Tokyo's last session was Friday 20 (Monday: holiday)
    nyse = ("XNYS", Interval.M1)
    tokyo = ("XTKS", Interval.M1)

    def nyse_minutes(*minutes: int) -> tuple[str, ...]:
        return tuple(f"2026-11-23 15:{m:02d}" for m in minutes)

    present = {
        "A": stored(*nyse, "2026-11-23 14:30", now, drop=nyse_minutes(10, 11, 12)),  # 3: violates
        "B": stored(*nyse, "2026-11-23 14:30", now, drop=nyse_minutes(20, 21, 22, 23, 24)),  # 5: violates
        "C": stored(*nyse, "2026-11-23 14:30", now, drop=nyse_minutes(30, 31)),  # 2: tolerated
        "D": stored(*nyse, "2026-11-23 14:30", now, drop=nyse_minutes(5, 40, 50)),  # 1s: tolerated
        "E": stored(*nyse, "2026-11-23 14:30", now),
        "F": stored(
            *tokyo, "2026-11-20 00:00", now, drop=("2026-11-20 06:20", "2026-11-20 06:21", "2026-11-20 06:22")
        ),
        "G": stored(*tokyo, "2026-11-20 00:00", now, drop=("2026-11-20 06:20", "2026-11-20 06:21")),
        "H": stored(*nyse, "2026-11-23 14:30", now, drop=nyse_minutes(40, 41, 42)),  # 41 confirmed empty
        "I": np.empty(0, dtype=np.int64),  # nothing stored in the window: freshness, not continuity
    }
    exchanges = {s: ("XTKS" if s in ("F", "G") else "XNYS") for s in [*present, "J"]}  # J: no row at all
    gaps = gaps_by_symbol(
        exchanges,
        Interval.M1,
        present,
        now_ns=ns(now),
        window=HOUR,
        multiplier=2.0,
        empty={"H": [(ns("2026-11-23 15:41"), ns("2026-11-23 15:42"))]},
    )
    assert {s: g.bars for s, g in gaps.items()} == {
        "A": 3, "B": 5, "C": 2, "D": 1, "E": 0, "F": 3, "G": 2, "H": 2, "I": 0, "J": 0,
    }  # fmt: skip
    violating, sampled, rate = violation_count((g.seconds for g in gaps.values()), 120.0)
    assert (violating, sampled, rate) == (3, 10, 0.3)
    # a 3x threshold leaves only B
    assert violation_count((g.seconds for g in gaps.values()), 180.0)[0] == 1
    assert violation_count([], 120.0) == (0, 0, 0.0)


# -- lag ---------------------------------------------------------------------------------------
def test_lag_counts_completed_trading_bars_after_the_cursor() -> None:
    cursors = np.array([ns("2026-11-20 20:59"), ns("2026-11-20 20:58"), ns("2026-11-20 20:40")])
    lag = lambda now: lag_seconds("XNYS", Interval.M1, cursors, ns(now)).tolist()  # noqa: E731
    assert lag("2026-11-20 21:00") == [0.0, 60.0, 1140.0]
    # the market is closed all weekend: the lag does not grow
    assert lag("2026-11-21 12:00") == [0.0, 60.0, 1140.0]
    assert lag("2026-11-22 23:59") == [0.0, 60.0, 1140.0]
    # Monday 14:35:30: 14:30..14:34 have ended, 14:35 has not
    assert lag("2026-11-23 14:35:30") == [300.0, 360.0, 1440.0]
    # a cursor in the future of `now` (a re-run of an old run) counts as caught up
    assert lag_seconds(
        "XNYS", Interval.M1, np.array([ns("2026-11-23 15:00")]), ns("2026-11-23 14:50")
    ).tolist() == [0.0]


def test_daily_lag_skips_the_holiday() -> None:
    cursors = np.array([ns("2026-11-25"), ns("2026-11-24")])
    # Friday 27 closed early at 18:00: its bar is complete at 19:00; Thursday had no session
    assert lag_seconds("XNYS", Interval.D1, cursors, ns("2026-11-27 19:00")).tolist() == [86400.0, 172800.0]
    assert lag_seconds("XNYS", Interval.D1, cursors, ns("2026-11-27 17:00")).tolist() == [0.0, 86400.0]


# -- sampling ----------------------------------------------------------------------------------
def test_sampling_is_reproducible_for_a_seed() -> None:
    universe = [f"S{i:03d}" for i in range(500)]
    first = sample_symbols(universe, 50, 7)
    assert len(first) == 50 and len(set(first)) == 50 and first == sorted(first)
    assert sample_symbols(list(reversed(universe)), 50, 7) == first  # input order does not matter
    assert sample_symbols(universe, 50, 8) != first
    assert sample_symbols(universe[:30], 50, 7) == universe[:30]  # a small tier: everyone
    assert sample_seed(1, "T0", "1m") == sample_seed(1, "T0", "1m") != sample_seed(1, "T1", "1m")


# -- verdicts and gauges -----------------------------------------------------------------------
def sample(**kw: object) -> SloSample:
    values: dict[str, object] = dict(
        sampled_at=datetime(2026, 11, 23, 16, tzinfo=UTC),
        tier="T0",
        interval="1m",
        sampled_symbols=200,
        violating_symbols=1,
        violation_rate=0.005,
        max_gap_seconds=180.0,
        lag_seconds=60.0,
        lag_p95_seconds=60.0,
        queue_depth=0,
        oldest_age_seconds=0.0,
        active_symbols=200,
        uncovered_symbols=0,
        policy_version=1,
    )
    values.update(kw)
    return SloSample(**values)  # type: ignore[arg-type]


def test_assessment_against_the_policy_thresholds() -> None:
    slo = SloPolicy()  # 2x, 0.5%, lag warn 5m, critical 15m
    ok = assess(sample(), slo)
    assert (ok.gap_threshold_seconds, ok.continuity_met, ok.lag_status, ok.met) == (120.0, True, "ok", True)
    assert assess(sample(violation_rate=0.01), slo).met is False
    assert assess(sample(lag_seconds=600.0), slo).lag_status == "warn"
    assert assess(sample(lag_seconds=600.0), slo).met is True
    assert assess(sample(lag_seconds=901.0), slo).lag_status == "critical"
    assert assess(sample(lag_seconds=None), slo).lag_status == "unknown"
    assert assess(sample(lag_seconds=None), slo).met is False
    # one daily bar behind is inherent (a bar ends before it can be fetched); two is critical
    assert assess(sample(interval="1d", lag_seconds=86400.0), slo).lag_status == "ok"
    assert assess(sample(interval="1d", lag_seconds=172800.0), slo).lag_status == "critical"
    strict = SloPolicy(gap_threshold_multiplier=3.0, lag_warn=Duration("1m"))
    assert assess(sample(interval="5m", lag_seconds=600.0), strict).lag_status == "warn"
    assert assess(sample(interval="5m"), strict).gap_threshold_seconds == 900.0


def sent_gauges(samples: list[SloSample], policy_version: int | None, count: int) -> set[str]:
    """The statsd lines emit_slo_gauges sends for `samples` (`count` of them)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    metrics = TaskMetrics("127.0.0.1", sock.getsockname()[1], "market_data")
    try:
        emit_slo_gauges(samples, metrics, policy_version=policy_version)
        lines: set[str] = set()
        while len(lines) < count:
            lines.update(sock.recv(65535).decode().splitlines())
    finally:
        metrics.close()
        sock.close()
    return lines


def test_gauges_sent_from_the_task() -> None:
    lines = sent_gauges(
        [
            sample(tier="T0", interval="1m", violation_rate=0.25, lag_seconds=120.0),
            sample(tier="T1", interval="1m", violation_rate=0.0, lag_seconds=300.0),
            sample(tier="T2", interval="1d", violation_rate=0.0, lag_seconds=None),
        ],
        3,
        5,
    )
    assert lines == {
        "market_data.slo_gap_violation_rate.T0.1m:0.25|g",
        "market_data.slo_gap_violation_rate.T1.1m:0.0|g",
        "market_data.slo_gap_violation_rate.T2.1d:0.0|g",
        "market_data.ingestion_lag_seconds.1m:300.0|g",  # the worst tier's lag; 1d has none
        "market_data.policy_version_info.3:1.0|g",
    }


def test_coverage_gauges_are_sent_for_samples_that_measured_it() -> None:
    lines = sent_gauges(
        [sample(tier="T0", interval="1m", expected_bars=450, missing_bars=3, confirmed_empty_bars=7)], None, 5
    )
    assert lines == {
        "market_data.slo_gap_violation_rate.T0.1m:0.005|g",
        "market_data.slo_expected_bars.T0.1m:450|g",
        "market_data.slo_missing_bars.T0.1m:3|g",
        "market_data.slo_confirmed_empty_bars.T0.1m:7|g",
        "market_data.ingestion_lag_seconds.1m:60.0|g",
    }


def test_coverage_counts_the_whole_window_stored_confirmed_empty_and_missing() -> None:
    """gaps_by_symbol's coverage: every expected bar ended by now, the unfetched tail included."""
    now = calendar.to_ns(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    expected = calendar.expected_bar_starts_ns("XNYS", Interval.M1, now - 30 * 60 * NS, now)
    stored = np.concatenate([expected[:10], expected[13:25]])  # 3 missing, then a 5-bar tail not fetched
    empty = [(int(expected[10]), int(expected[11]))]  # one of the three confirmed empty
    gaps = gaps_by_symbol(
        {"AAPL": "XNYS"},
        Interval.M1,
        {"AAPL": stored},
        now_ns=now,
        window=timedelta(hours=1),
        multiplier=2.0,
        empty={"AAPL": empty},
    )
    c = gaps["AAPL"].coverage
    assert (c.expected, c.stored, c.confirmed_empty, c.missing) == (30, 22, 1, 7)
    assert gaps["AAPL"].bars == 2  # the largest gap is judged up to the newest stored bar


@pytest.mark.parametrize("multiplier,bars", [(1.0, 20), (2.0, 20), (15.0, 32)])
def test_window_holds_room_for_a_violation(multiplier: float, bars: int) -> None:
    assert window_min_bars(multiplier) == bars
