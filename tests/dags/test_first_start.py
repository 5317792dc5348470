"""First start at any hour: a tier with no cursor gets a run at once, and its symbols their last
completed session, with no manual trigger; a second start adds nothing.

The scheduler's clock is the timetable's `_now`, set to a closed-market time (Saturday after
Thanksgiving, 10:17:42 UTC: US, London and Tokyo closed). The run the timetable plans is run
with `dag.test()` at that data interval, as the scheduler would create it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from market_data import db
from market_data.airflow import timetables
from market_data.airflow.timetables import SessionCadenceTimetable, _TierSchedule
from tests.conftest import truncate_data

SATURDAY = datetime(2026, 11, 28, 10, 17, 42, tzinfo=UTC)
NO_CATCHUP = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=False)
CATCHUP = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def next_run(tt: SessionCadenceTimetable, last: DataInterval | None, restriction=NO_CATCHUP) -> DataInterval:
    _TierSchedule.clear()  # what the scheduler reads (policy, cursors) is cached 10 s
    info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    assert info is not None
    return info.data_interval


async def tier_bars(dsn: str, tier: str) -> dict[str, int]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT b.symbol, count(*) FROM bars b JOIN symbol_universe u USING (symbol)
               WHERE u.tier = $1 GROUP BY 1""",
            tier,
        )
        return dict(rows)
    finally:
        await conn.close()


@pytest.fixture
def saturday(md_dsn: str, monkeypatch: pytest.MonkeyPatch):
    asyncio.run(truncate_data(md_dsn))
    monkeypatch.setattr(timetables, "_now", lambda: SATURDAY)
    yield md_dsn
    _TierSchedule.clear()


def test_a_tier_without_cursors_runs_at_once_on_a_saturday_and_gets_its_last_session(
    dagbag, saturday
) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)

    first = next_run(tt, None)
    # planned at once: the window ends at the current minute, not at Monday's open
    assert (first.start, first.end) == (utc(2026, 11, 28, 10, 12), utc(2026, 11, 28, 10, 17))

    run = dagbag.get_dag("md_sweep_t1").test(logical_date=first.end)
    assert run.state == "success"
    got = asyncio.run(tier_bars(saturday, "T1"))
    # Friday 27 November closed early (13:00 New York): 42 five-minute bars, every T1 symbol
    assert len(got) == 20 and set(got.values()) == {42}

    # the tier has cursors now: back to the markets' schedule (Monday's open), no second early run
    assert next_run(tt, first).end == utc(2026, 11, 30, 14, 35)


def test_a_second_start_with_cursors_plans_nothing_early_and_a_rerun_adds_nothing(
    dagbag, saturday, monkeypatch
) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    first = next_run(tt, None)
    assert dagbag.get_dag("md_sweep_t1").test(logical_date=first.end).state == "success"
    before = asyncio.run(tier_bars(saturday, "T1"))

    # restarted two hours later (the metadata database remembers the last run): Monday's open
    later = SATURDAY + timedelta(hours=2)
    monkeypatch.setattr(timetables, "_now", lambda: later)
    assert next_run(tt, first).end == utc(2026, 11, 30, 14, 35)
    # a run at that hour anyway (a manual trigger) finds nothing to fetch
    assert dagbag.get_dag("md_sweep_t1").test(logical_date=later.replace(second=0)).state == "success"
    assert asyncio.run(tier_bars(saturday, "T1")) == before


def test_an_early_run_that_stored_nothing_is_retried_a_cadence_later_not_in_a_loop(saturday) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    first = next_run(tt, None)
    # the run was created (and failed, or has not finished): the tier is still uncovered
    retry = next_run(tt, first)
    assert (retry.start, retry.end) == (first.end, first.end + timedelta(minutes=5))
    assert next_run(tt, retry).end == retry.end + timedelta(minutes=5)


def test_a_dag_that_never_ran_runs_at_once_even_when_its_tier_has_cursors(saturday) -> None:
    async def cursor() -> None:
        conn = await db.connect(saturday)
        try:
            await conn.execute(
                """INSERT INTO ingestion_cursors (symbol, interval, provider, last_ts)
                   VALUES ('V', '5m', 'synthetic', '2026-11-27T17:55:00Z')"""
            )
        finally:
            await conn.close()

    asyncio.run(cursor())
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    assert next_run(tt, None).end == utc(2026, 11, 28, 10, 17)
    # with catch-up the start date's windows rule, not the first-start shortcut
    assert next_run(tt, None, CATCHUP).end == utc(2026, 1, 2, 14, 35)
