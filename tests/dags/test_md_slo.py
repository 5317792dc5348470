"""md_slo under dag.test(): one slo_samples row per (tier, interval), the policy version, the gauges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from market_data import db
from market_data.ingest.pit_write import write_bars
from market_data.metrics import set_task_metrics
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from tests.conftest import truncate_data
from tests.integration.statsd_packets import StatsdReceiver

# Monday 2026-11-23 15:00 UTC, NYSE open since 14:30. A cron run's window ends at its logical date.
LOGICAL = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
AAPL_DROP = {OPEN + timedelta(minutes=m) for m in (10, 11, 12)}  # three minutes in a row: a violation


async def load_t0(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        provider = SyntheticProvider()
        bars = []
        for r in await conn.fetch("SELECT symbol, exchange_mic FROM symbol_universe WHERE tier = 'T0'"):
            # the crypto pairs trade all night: their SLO window (the last hour) is full of bars
            start = LOGICAL - timedelta(hours=2) if r["exchange_mic"] == "C247" else OPEN
            got = provider.bars_for(r["symbol"], r["exchange_mic"], Interval.M1, start, LOGICAL, LOGICAL)
            bars += [b for b in got if not (b.symbol == "AAPL" and b.ts in AAPL_DROP)]
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    finally:
        await conn.close()


async def stored(dsn: str) -> tuple[list[dict], int]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM slo_samples ORDER BY tier, interval")
        version = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
        return [dict(r) for r in rows], version
    finally:
        await conn.close()


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch):
    receiver = StatsdReceiver()
    monkeypatch.setenv("STATSD_PORT", str(receiver.port))
    monkeypatch.setenv("STATSD_PREFIX", "market_data")
    set_task_metrics(None)
    try:
        yield receiver
    finally:
        set_task_metrics(None)
        receiver.close()


def test_md_slo_stores_one_row_per_tier_interval_with_its_policy_version(dagbag, md_dsn: str, statsd) -> None:
    asyncio.run(truncate_data(md_dsn))
    asyncio.run(load_t0(md_dsn))
    dag = dagbag.get_dag("md_slo")
    assert dag.tags and set(dag.tags) >= {"market-data", "slo"}

    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    rows, version = asyncio.run(stored(md_dsn))
    assert [(r["tier"], r["interval"]) for r in rows] == [("T0", "1m"), ("T1", "5m"), ("T2", "1d")]
    assert {r["sampled_at"] for r in rows} == {LOGICAL}
    assert {r["policy_version"] for r in rows} == {version}
    t0 = rows[0]
    # 15 equities and 8 crypto pairs: only AAPL's hole violates
    assert (t0["sampled_symbols"], t0["violating_symbols"], t0["max_gap_seconds"]) == (23, 1, 180.0)
    assert t0["violation_rate"] == pytest.approx(1 / 23)
    assert (t0["lag_seconds"], t0["uncovered_symbols"], t0["active_symbols"]) == (0.0, 0, 23)
    # coverage: 15 equities x the 30 minutes since the open and 8 pairs x the window's 60
    # minutes, AAPL's three dropped bars missing
    assert (t0["expected_bars"], t0["missing_bars"], t0["confirmed_empty_bars"]) == (15 * 30 + 8 * 60, 3, 0)
    t1 = rows[1]  # nothing stored for T1: every expected bar is missing
    assert t1["expected_bars"] > 0 and t1["missing_bars"] == t1["expected_bars"]

    gauges = {line.name: line.value for line in statsd.receive(expected_lines=14) if line.type == "g"}
    assert gauges["market_data.slo_gap_violation_rate.T0.1m"] == pytest.approx(1 / 23)
    assert gauges["market_data.slo_gap_violation_rate.T1.5m"] == 0.0
    assert gauges["market_data.slo_gap_violation_rate.T2.1d"] == 0.0
    assert gauges["market_data.ingestion_lag_seconds.1m"] == 0.0
    assert "market_data.ingestion_lag_seconds.1d" not in gauges  # no T2 cursor: no lag to report
    assert gauges[f"market_data.policy_version_info.{version}"] == 1.0
    assert gauges["market_data.slo_expected_bars.T0.1m"] == 15 * 30 + 8 * 60
    assert gauges["market_data.slo_missing_bars.T0.1m"] == 3.0
    assert gauges["market_data.slo_confirmed_empty_bars.T0.1m"] == 0.0
    assert gauges["market_data.slo_missing_bars.T1.5m"] == gauges["market_data.slo_expected_bars.T1.5m"] > 0

    # Clear + re-run of the same run measures the same instant: its rows are replaced, not added
    rerun = dag.test(logical_date=LOGICAL, run_after=LOGICAL)
    assert rerun.state == "success"
    again, _ = asyncio.run(stored(md_dsn))
    assert len(again) == 3
    assert [{k: v for k, v in r.items() if k != "id"} for r in again] == [
        {k: v for k, v in r.items() if k != "id"} for r in rows
    ]
