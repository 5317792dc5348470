"""sample_slo on real Postgres: synthetic bars with known dropped ranges give the known rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from market_data.ingest.pit_write import write_bars
from market_data.policy import load_active_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Bar, Interval
from market_data.settings import get_settings
from market_data.slo import sample_seed, sample_slo, sample_symbols
from market_data.slo_samples import latest_samples, recent_samples

# Monday 2026-11-23 16:00 UTC: NYSE and Nasdaq open since 14:30.
NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
FRI_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def at(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return NOW.replace(hour=int(h), minute=int(m))


def minutes(first: str, count: int, step: int = 1) -> set[datetime]:
    return {at(first) + timedelta(minutes=i * step) for i in range(count)}


# T0 (1m): what each symbol misses. AAPL and TSLA violate (3 and 5 missing minutes in a row);
# MSFT misses 2 (tolerated); NVDA misses 5 of which 3 are confirmed empty (2 left in a row).
T0_DROPS = {
    "AAPL": minutes("15:10", 3),
    "MSFT": minutes("15:20", 2),
    "NVDA": minutes("15:30", 5),
    "TSLA": minutes("15:40", 5),
}
T0_CONFIRMED_EMPTY = ("NVDA", at("15:31"), at("15:34"))
T0_STOPS = {"META": at("15:50")}  # META's ingestion stopped: bars until 15:49, lag 10 minutes
# T1 (5m): HD misses three 5m bars in a row; COST and PEP were never ingested.
T1_DROPS = {"HD": minutes("15:00", 3, step=5)}
T1_NEVER = {"COST", "PEP"}


async def universe(conn, tier: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT symbol, exchange_mic FROM symbol_universe WHERE tier = $1 AND active", tier
    )
    return {r["symbol"]: r["exchange_mic"] for r in rows}


async def load_fixture(conn) -> None:
    provider = SyntheticProvider()
    bars: list[Bar] = []
    for symbol, mic in (await universe(conn, "T0")).items():
        end = T0_STOPS.get(symbol, NOW)
        drop = T0_DROPS.get(symbol, set())
        bars += [
            b for b in provider.bars_for(symbol, mic, Interval.M1, MON_OPEN, end, NOW) if b.ts not in drop
        ]
    for symbol, mic in (await universe(conn, "T1")).items():
        if symbol in T1_NEVER:
            continue
        drop = T1_DROPS.get(symbol, set())
        bars += [
            b for b in provider.bars_for(symbol, mic, Interval.M5, FRI_OPEN, NOW, NOW) if b.ts not in drop
        ]
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    symbol, start, end = T0_CONFIRMED_EMPTY
    await conn.execute(
        """INSERT INTO confirmed_empty_ranges (symbol, interval, start_ts, end_ts, provider)
           VALUES ($1, '1m', $2, $3, 'synthetic')""",
        symbol,
        start,
        end,
    )
    jobs = [
        ("T0", "queued", NOW - timedelta(minutes=20)),
        ("T0", "running", NOW - timedelta(minutes=5)),
        ("T0", "done", NOW - timedelta(hours=3)),
        ("T1", "dead", NOW - timedelta(hours=2)),
    ]
    await conn.executemany(
        """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status,
                                      created_at)
           VALUES ('AAPL', '1m', $1, $2, $3, 10, 'gap', $4, $5)""",
        [(at("15:10"), at("15:13"), tier, status, created) for tier, status, created in jobs],
    )


async def test_rates_lag_and_queue_match_the_dropped_ranges(conn) -> None:
    await load_fixture(conn)
    loaded = await load_active_policy(conn, get_settings().policy_file)
    samples = await sample_slo(conn, loaded.policy, NOW, policy_version=loaded.version)
    by_pair = {(s.tier, s.interval): s for s in samples}
    assert list(by_pair) == [("T0", "1m"), ("T1", "5m"), ("T2", "1d")]

    t0 = by_pair["T0", "1m"]
    # the 8 crypto pairs' bars (24/7 since the Monday open) hold no gap
    assert (t0.active_symbols, t0.sampled_symbols, t0.violating_symbols) == (23, 23, 2)
    assert t0.violation_rate == 2 / 23
    assert t0.max_gap_seconds == 300.0  # TSLA: 5 minutes
    assert t0.lag_seconds == 600.0  # META: 15:50..15:59 not ingested
    assert (t0.uncovered_symbols, t0.queue_depth, t0.oldest_age_seconds) == (0, 2, 1200.0)
    assert t0.policy_version == loaded.version and t0.sampled_at == NOW

    t1 = by_pair["T1", "5m"]
    assert (t1.active_symbols, t1.sampled_symbols, t1.violating_symbols) == (20, 20, 1)
    assert t1.violation_rate == 1 / 20 and t1.max_gap_seconds == 900.0
    assert (t1.lag_seconds, t1.lag_p95_seconds, t1.uncovered_symbols) == (0.0, 0.0, 2)
    assert (t1.queue_depth, t1.oldest_age_seconds) == (0, 0.0)  # its only job is dead

    t2 = by_pair["T2", "1d"]  # nothing ingested: no gap can be judged, no lag known
    assert (t2.sampled_symbols, t2.violating_symbols, t2.violation_rate, t2.max_gap_seconds) == (
        25,
        0,
        0.0,
        0.0,
    )
    assert (t2.lag_seconds, t2.uncovered_symbols) == (None, 25)

    stored = await recent_samples(conn, limit=10)
    assert sorted((s.tier, s.interval) for s in stored) == sorted(by_pair)
    assert {(s.tier, s.interval): msgspec.structs.replace(s, id=None) for s in stored} == by_pair

    # re-running the same instant replaces its rows; a later instant adds rows
    await sample_slo(conn, loaded.policy, NOW, policy_version=loaded.version)
    assert await conn.fetchval("SELECT count(*) FROM slo_samples") == 3
    later = NOW + timedelta(minutes=5)
    await sample_slo(conn, loaded.policy, later, policy_version=loaded.version)
    assert await conn.fetchval("SELECT count(*) FROM slo_samples") == 6
    newest = await recent_samples(conn, limit=3)
    assert {s.sampled_at for s in newest} == {later}
    assert [s.sampled_at for s in await recent_samples(conn, limit=100, since=later)] == [later] * 3
    latest = await latest_samples(conn)
    assert [(s.tier, s.interval, s.sampled_at) for s in latest] == [
        ("T0", "1m", later),
        ("T1", "5m", later),
        ("T2", "1d", later),
    ]
    # five minutes on, nothing new arrived: every T0 symbol is 5 bars behind, META 15 (one of
    # 23: above the 95th percentile)
    t0_later = next(s for s in latest if s.tier == "T0")
    assert (t0_later.lag_seconds, t0_later.lag_p95_seconds) == (900.0, 300.0)
    assert t0_later.violating_symbols == 2  # the not-ingested tail is lag, not a gap


async def test_a_sample_is_reproducible_for_a_seed(conn) -> None:
    await load_fixture(conn)
    loaded = await load_active_policy(conn, get_settings().policy_file)
    small = msgspec.structs.replace(
        loaded.policy, slo=msgspec.structs.replace(loaded.policy.slo, sample_size=5)
    )
    t0 = await universe(conn, "T0")
    for seed in (1, 2, 3, 4):
        first = await sample_slo(conn, small, NOW, seed=seed, store=False)
        again = await sample_slo(conn, small, NOW, seed=seed, store=False)
        assert first == again
        picked = sample_symbols(t0, 5, sample_seed(seed, "T0", "1m"))
        expected_violating = len(set(picked) & {"AAPL", "TSLA"})
        s0 = first[0]
        assert (s0.tier, s0.sampled_symbols, s0.violating_symbols) == ("T0", 5, expected_violating)
        assert s0.violation_rate == expected_violating / 5
        assert s0.active_symbols == 23 and s0.lag_seconds == 600.0  # the lag covers every active symbol
    assert await conn.fetchval("SELECT count(*) FROM slo_samples") == 0  # store=False


async def test_crypto_pairs_have_no_gap_at_midnight_or_on_weekends_and_a_real_hole_still_counts(conn) -> None:
    sunday = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)  # half an hour after a Saturday midnight
    pairs = {s: mic for s, mic in (await universe(conn, "T0")).items() if mic == "C247"}
    assert len(pairs) == 8
    hole = {datetime(2026, 11, 21, 23, 59, tzinfo=UTC) + timedelta(minutes=i) for i in range(3)}
    provider = SyntheticProvider()
    bars = [
        b
        for symbol, mic in pairs.items()
        for b in provider.bars_for(symbol, mic, Interval.M1, sunday - timedelta(hours=2), sunday, sunday)
        if not (symbol == "ETH-USD" and b.ts in hole)
    ]
    assert len(bars) == 8 * 120 - 3
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    loaded = await load_active_policy(conn, get_settings().policy_file)

    t0 = (await sample_slo(conn, loaded.policy, sunday, store=False))[0]

    # the equities have nothing stored (no gap judged); of the pairs only ETH-USD's hole violates
    assert (t0.tier, t0.violating_symbols, t0.max_gap_seconds) == ("T0", 1, 180.0)
    assert t0.lag_seconds == 0.0 and t0.uncovered_symbols == 15
