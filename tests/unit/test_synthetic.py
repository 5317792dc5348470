"""The synthetic provider: deterministic, session-aware, consistent across intervals, breakable."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from market_data.policy.schema import Duration, OutageWindow, SyntheticFaults
from market_data.providers.base import BarRequest
from market_data.providers.errors import RateLimitedError, RequestError, ServerError, should_retry
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval

# Monday 2026-11-23 is a regular NYSE session: 14:30-21:00 UTC.
MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
MON_CLOSE = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
TUE_NIGHT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def fixed_clock(at: datetime):
    return lambda: at


def digest(bars) -> str:
    return hashlib.sha256(msgspec.json.encode(bars)).hexdigest()


def test_same_symbol_interval_ts_gives_the_same_bar_in_two_instances() -> None:
    a = SyntheticProvider().bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, TUE_NIGHT)
    b = SyntheticProvider().bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, TUE_NIGHT)
    assert a == b
    assert len(a) == 390
    other = SyntheticProvider().bars_for("MSFT", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, TUE_NIGHT)
    assert [x.close for x in other] != [x.close for x in a]


def test_bars_are_identical_across_processes() -> None:
    code = (
        "from datetime import datetime, UTC; import hashlib, msgspec;"
        "from market_data.providers.synthetic import SyntheticProvider;"
        "from market_data.records import Interval;"
        "b = SyntheticProvider().bars_for('AAPL', 'XNYS', Interval.M5,"
        " datetime(2026, 11, 23, 14, 30, tzinfo=UTC), datetime(2026, 11, 23, 21, tzinfo=UTC),"
        " datetime(2026, 11, 24, 6, tzinfo=UTC));"
        "print(hashlib.sha256(msgspec.json.encode(b)).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = SyntheticProvider().bars_for("AAPL", "XNYS", Interval.M5, MON_OPEN, MON_CLOSE, TUE_NIGHT)
    assert out.stdout.strip() == digest(here)


def test_bars_exist_only_inside_sessions_and_only_when_complete() -> None:
    p = SyntheticProvider()
    weekend = p.bars_for(
        "AAPL",
        "XNYS",
        Interval.M1,
        datetime(2026, 11, 21, tzinfo=UTC),
        datetime(2026, 11, 23, tzinfo=UTC),
        TUE_NIGHT,
    )
    assert weekend == []
    bars = p.bars_for(
        "AAPL",
        "XNYS",
        Interval.M1,
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 24, tzinfo=UTC),
        TUE_NIGHT,
    )
    assert bars[0].ts == MON_OPEN and bars[-1].ts == MON_CLOSE - timedelta(minutes=1)
    # at 15:00:30 only the bars that ended by 15:00 exist
    mid = p.bars_for(
        "AAPL",
        "XNYS",
        Interval.M1,
        MON_OPEN,
        MON_CLOSE,
        datetime(2026, 11, 23, 15, 0, 30, tzinfo=UTC),
    )
    assert len(mid) == 30


def test_thanksgiving_friday_closes_early() -> None:
    bars = SyntheticProvider().bars_for(
        "AAPL",
        "XNYS",
        Interval.M1,
        datetime(2026, 11, 27, tzinfo=UTC),
        datetime(2026, 11, 28, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert len(bars) == 210  # 09:30-13:00 New York
    assert bars[-1].ts == datetime(2026, 11, 27, 17, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "interval,count", [(Interval.M5, 78), (Interval.M15, 26), (Interval.H1, 7), (Interval.D1, 1)]
)
def test_longer_intervals_aggregate_their_minutes(interval: Interval, count: int) -> None:
    p = SyntheticProvider()
    minutes = p.bars_for(
        "NVDA",
        "XNYS",
        Interval.M1,
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 24, tzinfo=UTC),
        TUE_NIGHT,
    )
    bars = p.bars_for(
        "NVDA",
        "XNYS",
        interval,
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 24, tzinfo=UTC),
        TUE_NIGHT,
    )
    assert len(bars) == count
    first = bars[0]
    inside = (
        [m for m in minutes if first.ts <= m.ts < first.ts + interval.delta]
        if interval.is_intraday
        else minutes
    )
    assert first.open == inside[0].open
    assert first.close == inside[-1].close
    assert first.high == max(m.high for m in inside)
    assert first.low == min(m.low for m in inside)
    assert first.volume == sum(m.volume for m in inside)
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high


def test_quotes_live_in_session_and_last_close_outside() -> None:
    p = SyntheticProvider()
    live = p.quote_at("AAPL", "XNYS", datetime(2026, 11, 23, 15, 0, 5, tzinfo=UTC))
    assert live.ts == datetime(2026, 11, 23, 15, 0, 5, tzinfo=UTC)
    assert live.bid < live.last < live.ask
    closed = p.quote_at("AAPL", "XNYS", TUE_NIGHT)
    last_bar = p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, TUE_NIGHT)[-1]
    assert closed.ts == MON_CLOSE and closed.last == last_bar.close


def request(symbols=("AAPL",), interval=Interval.M1) -> BarRequest:
    return BarRequest(
        symbols=tuple(symbols),
        exchange_mic="XNYS",
        interval=interval,
        start=MON_OPEN,
        end=MON_CLOSE,
    )


async def test_error_rate_one_always_fails_with_a_retryable_server_error() -> None:
    p = SyntheticProvider(faults=SyntheticFaults(error_rate=1.0), clock=fixed_clock(TUE_NIGHT))
    with pytest.raises(ServerError) as exc:
        await p.fetch_bars(request())
    assert should_retry(exc.value)


async def test_error_rate_is_roughly_the_share_of_failed_calls() -> None:
    p = SyntheticProvider(faults=SyntheticFaults(error_rate=0.3, seed=7), clock=fixed_clock(TUE_NIGHT))
    failures = 0
    for _ in range(1000):
        try:
            await p.fetch_quotes(["AAPL"], "XNYS")
        except ServerError:
            failures += 1
    assert 240 <= failures <= 360


async def test_429_carries_retry_after() -> None:
    p = SyntheticProvider(
        faults=SyntheticFaults(rate_429=1.0, retry_after_seconds=7), clock=fixed_clock(TUE_NIGHT)
    )
    with pytest.raises(RateLimitedError) as exc:
        await p.fetch_quotes(["AAPL"], "XNYS")
    assert exc.value.retry_after == 7 and exc.value.status == 429


async def test_outage_window_fails_calls_inside_it_only() -> None:
    window = OutageWindow(
        start=datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
        end=datetime(2026, 11, 23, 15, 30, tzinfo=UTC),
    )
    inside = SyntheticProvider(
        faults=SyntheticFaults(outages=[window]),
        clock=fixed_clock(datetime(2026, 11, 23, 15, 10, tzinfo=UTC)),
    )
    with pytest.raises(ServerError) as exc:
        await inside.fetch_bars(request())
    assert exc.value.status == 503
    after = SyntheticProvider(
        faults=SyntheticFaults(outages=[window]),
        clock=fixed_clock(datetime(2026, 11, 23, 15, 31, tzinfo=UTC)),
    )
    assert len(await after.fetch_bars(request())) == 61


async def test_latency_knob_delays_each_call() -> None:
    p = SyntheticProvider(faults=SyntheticFaults(latency_ms=120), clock=fixed_clock(TUE_NIGHT))
    t0 = time.monotonic()
    await asyncio.gather(p.fetch_quotes(["AAPL"], "XNYS"), p.fetch_quotes(["MSFT"], "XNYS"))
    assert time.monotonic() - t0 >= 0.12


def test_dropped_bars_are_missing_while_recent_and_return_after_heal() -> None:
    faults = SyntheticFaults(drop_rate=0.1, drop_heal=Duration("2h"))
    p = SyntheticProvider(faults=faults)
    soon = datetime(2026, 11, 23, 21, 5, tzinfo=UTC)
    early = p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, soon)
    later = p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, soon + timedelta(hours=2))
    assert len(later) == 390
    recent_missing = {b.ts for b in later} - {b.ts for b in early}
    # only bars that ended within 2 hours of `soon` can be missing, and about 10% of those 115 are
    assert all(ts >= soon - timedelta(hours=2, minutes=1) for ts in recent_missing)
    assert 4 <= len(recent_missing) <= 25
    # deterministic: asking again at the same instant drops the same bars
    assert early == p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, soon)


def test_no_trade_minutes_never_exist() -> None:
    p = SyntheticProvider(faults=SyntheticFaults(no_trade_rate=0.05))
    bars = p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_CLOSE, TUE_NIGHT + timedelta(days=30))
    assert 330 < len(bars) < 390


async def test_too_many_symbols_per_request_is_refused() -> None:
    p = SyntheticProvider(faults=SyntheticFaults(symbols_per_request=2), clock=fixed_clock(TUE_NIGHT))
    with pytest.raises(RequestError):
        await p.fetch_bars(request(symbols=("A", "B", "C")))
    bars = await p.fetch_bars(request(symbols=("A", "B")))
    assert {b.symbol for b in bars} == {"A", "B"}


def test_environment_overrides_the_policy_knobs() -> None:
    from market_data.providers.synthetic import faults_with_env

    base = SyntheticFaults(error_rate=0.1, latency_ms=5)
    f = faults_with_env(
        base,
        {
            "MD_SYNTHETIC_ERROR_RATE": "0.5",
            "MD_SYNTHETIC_DROP_HEAL": "3m",
            "MD_SYNTHETIC_OUTAGES": "2026-11-23T15:00:00Z/2026-11-23T15:30:00Z",
        },
    )
    assert f.error_rate == 0.5 and f.latency_ms == 5 and f.drop_heal.seconds == 180
    assert f.outages[0].end - f.outages[0].start == timedelta(minutes=30)
    assert faults_with_env(base, {}) == base


@pytest.mark.parametrize(
    "var,value",
    [("MD_SYNTHETIC_ERROR_RATE", "2"), ("MD_SYNTHETIC_OUTAGES", "tomorrow"), ("MD_SYNTHETIC_DROP_HEAL", "x")],
)
def test_bad_environment_overrides_are_refused_by_name(var: str, value: str) -> None:
    from market_data.providers.synthetic import faults_with_env

    with pytest.raises(ValueError, match="MD_SYNTHETIC_"):
        faults_with_env(None, {var: value})


# -- crypto pairs and corrections ---------------------------------------------------------------
SAT_MIDNIGHT = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
CORRECTING = SyntheticFaults(revision_rate=1.0, revision_delay=Duration("45s"), revision_size=0.002)


def test_a_crypto_pair_trades_every_minute_in_fractions_of_a_coin() -> None:
    p = SyntheticProvider()
    later = SAT_MIDNIGHT + timedelta(days=1)
    around_midnight = (SAT_MIDNIGHT - timedelta(hours=1), SAT_MIDNIGHT + timedelta(hours=1), later)
    bars = p.bars_for("BTC-USD", "C247", Interval.M1, *around_midnight)
    assert len(bars) == 120 and bars[60].ts == SAT_MIDNIGHT
    assert all(0 < b.volume < 20 and not b.volume.is_integer() for b in bars)
    hours = p.bars_for("BTC-USD", "C247", Interval.H1, *around_midnight)
    assert [h.volume for h in hours] == [
        round(sum(b.volume for b in bars[:60]), 8),
        round(sum(b.volume for b in bars[60:]), 8),
    ]
    quote = p.quote_at("BTC-USD", "C247", SAT_MIDNIGHT + timedelta(seconds=90))
    assert quote.ts == SAT_MIDNIGHT + timedelta(seconds=90)  # a live quote on a Saturday night
    assert quote.bid_size is not None and not quote.bid_size.is_integer()
    # equities keep whole volumes and sizes
    aapl = p.bars_for("AAPL", "XNYS", Interval.M1, MON_OPEN, MON_OPEN + timedelta(minutes=5), TUE_NIGHT)
    assert all(b.volume.is_integer() for b in aapl)


def test_a_corrected_bar_is_served_as_first_delivered_until_its_delay_has_passed() -> None:
    p = SyntheticProvider(faults=CORRECTING)
    plain = SyntheticProvider()
    start, end = SAT_MIDNIGHT, SAT_MIDNIGHT + timedelta(minutes=1)  # the bar ends at 00:01

    def seen_at(seconds_after_end: int):
        (bar,) = p.bars_for(
            "ETH-USD", "C247", Interval.M1, start, end, end + timedelta(seconds=seconds_after_end)
        )
        return bar

    (first,) = plain.bars_for("ETH-USD", "C247", Interval.M1, start, end, end)
    assert seen_at(0) == first and seen_at(44) == first
    revised = seen_at(45)
    assert seen_at(3600) == revised != first
    assert first.volume * 1.01 <= revised.volume <= first.volume * 1.1 + 1e-8  # late trades
    assert abs(revised.close / first.close - 1) <= 0.002 + 1e-4  # moved by up to revision_size
    assert revised.high >= max(revised.open, revised.close) and revised.low <= min(
        revised.open, revised.close
    )


def test_which_bars_are_corrected_is_the_same_in_every_instance_and_about_the_rate() -> None:
    faults = msgspec.structs.replace(CORRECTING, revision_rate=0.08)
    later = TUE_NIGHT + timedelta(days=7)
    window = (SAT_MIDNIGHT, SAT_MIDNIGHT + timedelta(days=1))
    uncorrected = SyntheticProvider().bars_for("SOL-USD", "C247", Interval.M1, *window, later)

    def corrected(provider: SyntheticProvider) -> list[datetime]:
        bars = provider.bars_for("SOL-USD", "C247", Interval.M1, *window, later)
        return [
            b.ts
            for b, v1 in zip(bars, uncorrected, strict=True)
            if (b.close, b.volume) != (v1.close, v1.volume)
        ]

    one = corrected(SyntheticProvider("synthetic", faults))
    assert corrected(SyntheticProvider("synthetic_backup", faults)) == one
    assert 0.06 < len(one) / 1440 < 0.10  # 8 % of a day's minutes


def test_a_five_minute_bar_changes_with_its_corrected_minute() -> None:
    p = SyntheticProvider(faults=CORRECTING)
    start, end = SAT_MIDNIGHT, SAT_MIDNIGHT + timedelta(minutes=5)
    (before,) = p.bars_for("BTC-USD", "C247", Interval.M5, start, end, end)
    (after,) = p.bars_for("BTC-USD", "C247", Interval.M5, start, end, end + timedelta(minutes=1))
    minutes = p.bars_for("BTC-USD", "C247", Interval.M1, start, end, end + timedelta(minutes=1))
    assert after != before and after.close == minutes[-1].close
    assert after.volume == round(sum(m.volume for m in minutes), 8)


def test_revision_knobs_come_from_the_environment_too() -> None:
    from market_data.providers.synthetic import faults_with_env

    f = faults_with_env(
        SyntheticFaults(),
        {
            "MD_SYNTHETIC_REVISION_RATE": "0.5",
            "MD_SYNTHETIC_REVISION_DELAY": "2m",
            "MD_SYNTHETIC_REVISION_SIZE": "0.01",
        },
    )
    assert (f.revision_rate, f.revision_delay.seconds, f.revision_size) == (0.5, 120, 0.01)
    with pytest.raises(ValueError, match="MD_SYNTHETIC_"):
        faults_with_env(None, {"MD_SYNTHETIC_REVISION_SIZE": "0.9"})
