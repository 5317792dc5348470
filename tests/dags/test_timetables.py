"""SessionCadenceTimetable: runs only while markets trade, at the active policy's cadence."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from market_data import db
from market_data.airflow.timetables import BackfillTimetable, SessionCadenceTimetable, _TierSchedule
from market_data.policy.store import reload_policy
from market_data.records import Tier

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
CATCHUP = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True)
NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1: refused at once


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def after(tt: SessionCadenceTimetable, end: datetime):
    info = tt.next_dagrun_info(
        last_automated_data_interval=DataInterval(pendulum.instance(end), pendulum.instance(end)),
        restriction=CATCHUP,
    )
    assert info is not None
    return info.data_interval.start, info.data_interval.end


@pytest.fixture
def schedule_db(md_dsn: str):
    _TierSchedule.clear()
    yield md_dsn
    _TierSchedule.clear()
    asyncio.run(_reload(md_dsn, DEFAULT))


async def _reload(dsn: str, body: str) -> None:
    c = await db.connect(dsn)
    try:
        await reload_policy(c, body, actor="tests")
    finally:
        await c.close()


def t1_every(cadence: str) -> str:
    body = re.sub(r'^bar_cadence = "5m"$', f'bar_cadence = "{cadence}"', DEFAULT, count=1, flags=re.M)
    return re.sub(r'^lookback = "1h"$', 'lookback = "2h"', body, count=1, flags=re.M)


def test_an_equity_tier_runs_during_sessions_and_skips_the_night(schedule_db) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    assert after(tt, utc(2026, 11, 23, 15, 0)) == (utc(2026, 11, 23, 15, 0), utc(2026, 11, 23, 15, 5))
    # the run at the close collects the last bar; the next one is at Tuesday's open
    assert after(tt, utc(2026, 11, 23, 20, 55))[1] == utc(2026, 11, 23, 21, 0)
    assert after(tt, utc(2026, 11, 23, 21, 0)) == (utc(2026, 11, 24, 14, 30), utc(2026, 11, 24, 14, 35))


def test_holidays_and_early_closes(schedule_db) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    # Wednesday's close -> Thanksgiving (closed) -> Friday's open
    assert after(tt, utc(2026, 11, 25, 21, 0))[1] == utc(2026, 11, 27, 14, 35)
    # Friday closes at 13:00 New York (18:00 UTC); the next run is Monday
    assert after(tt, utc(2026, 11, 27, 17, 55))[1] == utc(2026, 11, 27, 18, 0)
    assert after(tt, utc(2026, 11, 27, 18, 0))[1] == utc(2026, 11, 30, 14, 35)


def test_t0_with_crypto_pairs_runs_every_minute_at_night_on_weekends_and_across_midnight(schedule_db) -> None:
    tt = SessionCadenceTimetable("T0", default_cadence_seconds=60)
    assert after(tt, utc(2026, 11, 23, 21, 0)) == (utc(2026, 11, 23, 21, 0), utc(2026, 11, 23, 21, 1))
    assert after(tt, utc(2026, 11, 21, 23, 59)) == (utc(2026, 11, 21, 23, 59), utc(2026, 11, 22, 0, 0))
    assert after(tt, utc(2026, 11, 22, 0, 0)) == (utc(2026, 11, 22, 0, 0), utc(2026, 11, 22, 0, 1))
    assert after(tt, utc(2026, 11, 26, 12, 0))[1] == utc(2026, 11, 26, 12, 1)  # Thanksgiving


def test_the_cadence_comes_from_the_active_policy(schedule_db) -> None:
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    assert after(tt, utc(2026, 11, 23, 15, 0)) == (utc(2026, 11, 23, 15, 0), utc(2026, 11, 23, 15, 5))
    asyncio.run(_reload(schedule_db, t1_every("15m")))
    _TierSchedule.clear()  # the scheduler's cache would expire within seconds
    assert after(tt, utc(2026, 11, 23, 15, 0)) == (utc(2026, 11, 23, 15, 0), utc(2026, 11, 23, 15, 15))


def test_the_schedule_is_read_through_the_market_data_db_connection(schedule_db, monkeypatch) -> None:
    """AIRFLOW_CONN_MARKET_DATA_DB (the run's database) answers; DATABASE_URL is not used."""
    monkeypatch.setenv("DATABASE_URL", NOWHERE)
    asyncio.run(_reload(schedule_db, t1_every("15m")))
    _TierSchedule.clear()
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=300)
    assert after(tt, utc(2026, 11, 23, 15, 0)) == (utc(2026, 11, 23, 15, 0), utc(2026, 11, 23, 15, 15))


def test_while_postgres_is_away_the_file_then_the_parsed_cadence_rules(
    schedule_db, monkeypatch, tmp_path
) -> None:
    asyncio.run(_reload(schedule_db, t1_every("15m")))  # what Postgres would say: not reachable now
    monkeypatch.setenv("DATABASE_URL", NOWHERE)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKET_DATA_DB",
        '{"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "x"}',
    )
    _TierSchedule.clear()
    tt = SessionCadenceTimetable("T1", default_cadence_seconds=600, exchanges=("XNYS",))
    assert after(tt, utc(2026, 11, 23, 15, 0))[1] == utc(2026, 11, 23, 15, 5)  # the file's 5m
    monkeypatch.setenv("MARKET_DATA_POLICY_FILE", str(tmp_path / "missing.toml"))
    _TierSchedule.clear()
    assert after(tt, utc(2026, 11, 23, 15, 0))[1] == utc(2026, 11, 23, 15, 10)  # as parsed
    assert BackfillTimetable(default_cadence_seconds=420)._cadence() == 420


def test_dag_files_build_the_timetables_from_the_policy_file_and_the_seed_universe() -> None:
    t0, t1, t2 = (SessionCadenceTimetable.from_policy_file(t).serialize() for t in Tier)
    assert (t0["default_cadence_seconds"], t0["mode"], t0["exchanges"]) == (
        60,
        "intraday",
        ["ARCX", "C247", "XNAS", "XNYS"],
    )
    assert (t1["default_cadence_seconds"], t1["mode"]) == (300, "intraday")
    assert (t2["default_cadence_seconds"], t2["mode"]) == (86400, "after_close")
    assert t2["exchanges"] == ["ARCX", "XLON", "XNAS", "XNYS", "XTKS"]
    assert BackfillTimetable.from_policy_file().default_cadence_seconds == 300


def test_after_close_mode_runs_after_each_close_of_the_tiers_exchanges(schedule_db) -> None:
    """T2's seed symbols trade in London, Tokyo and New York: one run 15 minutes after each close."""
    tt = SessionCadenceTimetable("T2", mode="after_close", exchanges=("XNYS",), close_delay_seconds=900)
    runs, t = [], utc(2026, 11, 23, 12, 0)
    for _ in range(7):
        t = after(tt, t)[1]
        runs.append(t)
    assert runs == [
        utc(2026, 11, 23, 16, 45),  # London
        utc(2026, 11, 23, 21, 15),  # New York (NYSE, Nasdaq, Arca close together)
        utc(2026, 11, 24, 6, 45),  # Tokyo (Monday 23 November was a Japanese holiday)
        utc(2026, 11, 24, 16, 45),
        utc(2026, 11, 24, 21, 15),
        utc(2026, 11, 25, 6, 45),
        utc(2026, 11, 25, 16, 45),
    ]


def test_after_close_follows_early_closes_and_holidays(schedule_db) -> None:
    tt = SessionCadenceTimetable("T2", mode="after_close", close_delay_seconds=900)
    _, end = tt.next_window(utc(2026, 11, 26, 12, 0), 86400, ("XNYS",))
    assert end == utc(2026, 11, 27, 18, 15)  # Thanksgiving closed, Friday closes at 13:00 New York


def test_tokyo_lunch_break_gets_no_run(schedule_db) -> None:
    tt = SessionCadenceTimetable("T2", default_cadence_seconds=60, exchanges=("XTKS",))
    _, end = tt.next_window(utc(2026, 11, 24, 2, 29), 60, ("XTKS",))
    assert end == utc(2026, 11, 24, 2, 30)  # 11:29-11:30 JST, the last minute before lunch
    assert tt.next_window(end, 60, ("XTKS",))[1] == utc(2026, 11, 24, 3, 31)  # 12:30 JST + 1 minute


def test_serialization_round_trip() -> None:
    tt = SessionCadenceTimetable(
        "T2", default_cadence_seconds=86400, mode="after_close", exchanges=("XLON", "XNYS")
    )
    again = SessionCadenceTimetable.deserialize(tt.serialize())
    assert again.serialize() == tt.serialize()
    with pytest.raises(ValueError, match="mode"):
        SessionCadenceTimetable("T0", mode="hourly").validate()


def test_without_catch_up_only_the_latest_window_runs(schedule_db, monkeypatch) -> None:
    """A scheduler started a day late plans one T2 run (the latest close), not one per close."""
    from market_data.airflow import timetables

    tt = SessionCadenceTimetable("T2", mode="after_close", exchanges=("XNYS",), close_delay_seconds=900)
    no_catchup = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=False)
    monkeypatch.setattr(timetables, "_now", lambda: utc(2026, 11, 25, 8, 0))
    first = tt.next_dagrun_info(last_automated_data_interval=None, restriction=no_catchup)
    assert first is not None
    # closes since 08:00 the day before: London 16:45, New York 21:15, Tokyo 06:45: only Tokyo's
    assert first.data_interval.end == utc(2026, 11, 25, 6, 45)
    later = tt.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=no_catchup)
    assert later is not None and later.data_interval.end == utc(2026, 11, 25, 16, 45)  # not yet due

    t0 = SessionCadenceTimetable("T0", default_cadence_seconds=60)
    monkeypatch.setattr(timetables, "_now", lambda: utc(2026, 11, 23, 15, 0, 30))
    info = t0.next_dagrun_info(last_automated_data_interval=None, restriction=no_catchup)
    assert info is not None and info.data_interval.end == utc(2026, 11, 23, 15, 0)
