"""Gap detection and backfill enqueue against the real database.

Exactly the dropped ranges are queued, after coalescing; closed hours and confirmed-empty
ranges never are; per-tier caps refuse the overflow without raising.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import msgspec

from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.gaps import Window, find_gaps
from market_data.ingest.pit_write import write_bars
from market_data.ingest.sweep import SweepBatch, run_sweep_batch
from market_data.jobs import Job
from market_data.policy import parse_policy
from market_data.policy.schema import Duration, SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry

MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
TUE_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
POLICY = parse_policy(open("include/policy.toml").read())


def minute(t: datetime, k: int) -> datetime:
    return t + timedelta(minutes=k)


def bars_except(dropped: set[datetime], start=MON_OPEN, end=MON_OPEN + timedelta(minutes=390)):
    bars = SyntheticProvider().bars_for("AAPL", "XNAS", Interval.M1, start, end, LATER)
    return [b for b in bars if b.ts not in dropped]


async def test_exactly_the_dropped_ranges_are_found(conn) -> None:
    dropped = {minute(MON_OPEN, k) for k in (5, 6, 7, 100, 389)}
    await write_bars(conn, bars_except(dropped), policy_version=1, advance_cursors=True)
    gaps = await find_gaps(
        conn,
        [
            Window(
                symbol="AAPL",
                exchange_mic="XNAS",
                interval=Interval.M1,
                after=MON_OPEN - timedelta(microseconds=1),
                until=minute(MON_OPEN, 389),
            )
        ],
    )
    assert [(g.start, g.end, g.bars) for g in gaps] == [
        (minute(MON_OPEN, 5), minute(MON_OPEN, 8), 3),
        (minute(MON_OPEN, 100), minute(MON_OPEN, 101), 1),
        (minute(MON_OPEN, 389), minute(MON_OPEN, 390), 1),
    ]


async def test_closed_hours_are_never_gaps(conn) -> None:
    monday = bars_except(set())
    tuesday = bars_except(set(), TUE_OPEN, TUE_OPEN + timedelta(minutes=60))
    await write_bars(conn, monday + tuesday, policy_version=1, advance_cursors=True)
    gaps = await find_gaps(
        conn,
        [
            Window(
                symbol="AAPL",
                exchange_mic="XNAS",
                interval=Interval.M1,
                after=minute(MON_OPEN, 300),
                until=minute(TUE_OPEN, 59),
            )
        ],
    )
    assert gaps == []


async def test_confirmed_empty_ranges_are_not_gaps(conn) -> None:
    dropped = {minute(MON_OPEN, k) for k in range(10, 20)}
    await write_bars(conn, bars_except(dropped), policy_version=1, advance_cursors=True)
    await conn.execute(
        """INSERT INTO confirmed_empty_ranges (symbol, interval, start_ts, end_ts, provider)
           VALUES ('AAPL', '1m', $1, $2, 'synthetic')""",
        minute(MON_OPEN, 10),
        minute(MON_OPEN, 15),
    )
    gaps = await find_gaps(
        conn,
        [
            Window(
                symbol="AAPL",
                exchange_mic="XNAS",
                interval=Interval.M1,
                after=MON_OPEN,
                until=minute(MON_OPEN, 389),
            )
        ],
    )
    assert [(g.start, g.end) for g in gaps] == [(minute(MON_OPEN, 15), minute(MON_OPEN, 20))]


async def test_a_sweep_with_dropped_bars_queues_exactly_those_ranges(conn) -> None:
    """Late bars (synthetic drop_rate) show up as gaps once the cursor passes them."""
    now = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    faults = SyntheticFaults(drop_rate=0.05, drop_heal=Duration("2h"), seed=3)
    provider = SyntheticProvider("synthetic", faults, clock=lambda: now)
    registry = ProviderRegistry(POLICY, {"synthetic": provider})
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN"]
    jobs = [
        Job(
            kind="bars",
            symbol=s,
            interval=Interval.M1,
            start=MON_OPEN,
            end=now,
            exchange_mic="XNAS",
            tier=Tier.T0,
        )
        for s in symbols
    ]
    result = await run_sweep_batch(
        conn, POLICY, SweepBatch(tier=Tier.T0, policy_version=1, now=now, jobs=jobs), registry
    )
    # what was dropped: the healthy answer minus what the sweep stored, up to each cursor
    expected: set[tuple[str, datetime]] = set()
    for s in symbols:
        full = {
            b.ts for b in provider.bars_for(s, "XNAS", Interval.M1, MON_OPEN, now, now + timedelta(hours=3))
        }
        got = {b.ts for b in provider.bars_for(s, "XNAS", Interval.M1, MON_OPEN, now, now)}
        cursor = max(got)
        expected |= {(s, t) for t in full - got if t <= cursor}
    assert expected, "the fault knob dropped nothing: the test would prove nothing"
    rows = await conn.fetch("SELECT symbol, start_ts, end_ts FROM backfill_jobs WHERE status = 'queued'")
    queued = {
        (r["symbol"], r["start_ts"] + timedelta(minutes=k))
        for r in rows
        for k in range(int((r["end_ts"] - r["start_ts"]).total_seconds() // 60))
    }
    assert queued == expected
    assert result.gap_bars == len(expected) and result.backfills_queued == result.gaps_found
    # coalesced: no two queued jobs of a symbol touch or overlap
    by_symbol: dict[str, list[tuple[datetime, datetime]]] = {}
    for r in rows:
        by_symbol.setdefault(r["symbol"], []).append((r["start_ts"], r["end_ts"]))
    for spans in by_symbol.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def rng(symbol: str, a: int, b: int, tier: Tier = Tier.T0, source: str = "gap") -> BackfillRange:
    return BackfillRange(
        symbol=symbol,
        interval=Interval.M1,
        start=minute(MON_OPEN, a),
        end=minute(MON_OPEN, b),
        tier=tier,
        source=source,
    )  # type: ignore[arg-type]


async def test_adjacent_and_overlapping_ranges_coalesce_into_the_oldest_job(conn) -> None:
    first = await enqueue_backfills(conn, [rng("AAPL", 10, 20)], POLICY)
    assert first.inserted == 1
    again = await enqueue_backfills(
        conn, [rng("AAPL", 20, 25), rng("AAPL", 24, 30), rng("AAPL", 50, 55), rng("MSFT", 10, 20)], POLICY
    )
    assert (again.inserted, again.merged) == (2, 2)
    rows = await conn.fetch(
        "SELECT id, symbol, start_ts, end_ts FROM backfill_jobs ORDER BY symbol, start_ts"
    )
    assert [(r["symbol"], r["start_ts"], r["end_ts"]) for r in rows] == [
        ("AAPL", minute(MON_OPEN, 10), minute(MON_OPEN, 30)),
        ("AAPL", minute(MON_OPEN, 50), minute(MON_OPEN, 55)),
        ("MSFT", minute(MON_OPEN, 10), minute(MON_OPEN, 20)),
    ]
    assert rows[0]["id"] == first.job_ids[0]  # keeps the oldest job (and its age)
    # a range bridging two queued jobs merges all three
    bridge = await enqueue_backfills(conn, [rng("AAPL", 30, 50)], POLICY)
    assert bridge.inserted == 0
    spans = await conn.fetch("SELECT start_ts, end_ts FROM backfill_jobs WHERE symbol = 'AAPL'")
    assert [(s["start_ts"], s["end_ts"]) for s in spans] == [(minute(MON_OPEN, 10), minute(MON_OPEN, 55))]


async def test_priorities_follow_the_policy_and_manual_wins_a_merge(conn) -> None:
    await enqueue_backfills(
        conn, [rng("AAPL", 0, 5, Tier.T0), rng("V", 0, 5, Tier.T1), rng("MRK", 0, 5, Tier.T2)], POLICY
    )
    prio = dict(await conn.fetch("SELECT symbol, priority FROM backfill_jobs"))
    assert prio == {"AAPL": 10, "V": 20, "MRK": 30}
    await enqueue_backfills(conn, [rng("V", 3, 8, Tier.T1, "manual")], POLICY)
    assert await conn.fetchval("SELECT priority FROM backfill_jobs WHERE symbol = 'V'") == 0


async def test_caps_refuse_the_overflow_gracefully(conn, caplog) -> None:
    small = msgspec.structs.replace(
        POLICY,
        backfill=msgspec.structs.replace(
            POLICY.backfill, caps={Tier.T0: 3, Tier.T1: 20_000, Tier.T2: 40_000}
        ),
    )
    ranges = [rng(s, 0, 5) for s in ("AAPL", "MSFT", "NVDA", "AMZN", "META", "TSLA")]
    with caplog.at_level(logging.WARNING):
        result = await enqueue_backfills(conn, ranges, small)
    assert (result.inserted, result.refused) == (3, {"T0": 3})
    assert await conn.fetchval("SELECT count(*) FROM backfill_jobs") == 3
    refusals = [r for r in caplog.records if "at its cap" in r.getMessage()]
    assert len(refusals) == 1 and "3 range(s) refused" in refusals[0].getMessage()
    # merging into a queued job still works at the cap (it adds no job)
    merged = await enqueue_backfills(conn, [rng("AAPL", 5, 9)], small)
    assert merged.merged == 1 and merged.refused == {}
