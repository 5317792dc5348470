"""The tier sweep DAGs under dag.test(): bars land, cursors move, re-runs add nothing, reloads apply."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from market_data import db
from tests.conftest import truncate_data

# Monday 2026-11-23 15:00 UTC: NYSE open since 14:30. A cron run's window ends at its logical date.
LOGICAL = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


async def snapshot(dsn: str) -> dict:
    conn = await db.connect(dsn)
    try:
        return {
            "bars": await conn.fetchval("SELECT count(*) FROM bars"),
            "versions": await conn.fetchval("SELECT count(DISTINCT as_of) FROM bars"),
            "per_symbol": dict(await conn.fetch("SELECT symbol, count(*) FROM bars GROUP BY 1")),
            "cursors": {
                (r["symbol"], r["interval"]): r["last_ts"]
                for r in await conn.fetch("SELECT symbol, interval, last_ts FROM ingestion_cursors")
            },
            "t0": {
                r["symbol"]: r["exchange_mic"]
                for r in await conn.fetch(
                    "SELECT symbol, exchange_mic FROM symbol_universe WHERE tier='T0' AND active"
                )
            },
        }
    finally:
        await conn.close()


def test_sweep_t0_loads_history_advances_cursors_and_is_idempotent(dagbag, md_dsn: str) -> None:
    asyncio.run(truncate_data(md_dsn))
    dag = dagbag.get_dag("md_sweep_t0")

    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    first = asyncio.run(snapshot(md_dsn))
    # equities: Friday's full session (390) plus Monday 14:30..14:59 (30); crypto pairs: Sunday's
    # UTC day (their last completed session, 1440 minutes) plus Monday 00:00..14:59 (900)
    assert first["per_symbol"] == {s: 2340 if mic == "C247" else 420 for s, mic in first["t0"].items()}
    assert sorted(mic for mic in first["t0"].values() if mic == "C247") == ["C247"] * 8
    assert first["cursors"] == {(s, "1m"): datetime(2026, 11, 23, 14, 59, tzinfo=UTC) for s in first["t0"]}

    rerun = dag.test(logical_date=LOGICAL, run_after=LOGICAL)
    assert rerun.state == "success"
    second = asyncio.run(snapshot(md_dsn))
    assert second == first


def test_a_run_after_a_reload_uses_the_new_provider_setting(dagbag, md_dsn: str) -> None:
    """Disable `synthetic` through a reload: the next run is served by `synthetic_backup`."""
    import re
    from pathlib import Path

    from market_data.policy.store import reload_policy

    default = (Path(__file__).resolve().parents[2] / "include" / "policy.toml").read_text()
    disabled = re.sub(
        r'(\[providers\.synthetic\]\nkind = "synthetic"\n)enabled = true',
        r"\1enabled = false",
        default,
        count=1,
    )
    assert disabled != default

    async def reload(body: str) -> int:
        c = await db.connect(md_dsn)
        try:
            return (await reload_policy(c, body, actor="tests"))[0].version
        finally:
            await c.close()

    asyncio.run(truncate_data(md_dsn))
    version = asyncio.run(reload(disabled))
    try:
        run = dagbag.get_dag("md_sweep_t0").test(logical_date=LOGICAL)
        assert run.state == "success"

        async def written() -> tuple[set[str], set[int]]:
            c = await db.connect(md_dsn)
            try:
                providers = {r[0] for r in await c.fetch("SELECT DISTINCT provider FROM bars")}
                versions = {r[0] for r in await c.fetch("SELECT DISTINCT policy_version FROM bars")}
                return providers, versions
            finally:
                await c.close()

        providers, versions = asyncio.run(written())
        assert providers == {"synthetic_backup"}
        assert versions == {version}  # the run recorded the version it used
    finally:
        asyncio.run(reload(default))


async def _tier_bars(dsn: str, tier: str) -> dict[str, tuple[int, datetime]]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT b.symbol, count(*) AS n, max(b.ts) AS last FROM bars b
               JOIN symbol_universe u USING (symbol) WHERE u.tier = $1 GROUP BY b.symbol""",
            tier,
        )
        return {r["symbol"]: (r["n"], r["last"]) for r in rows}
    finally:
        await conn.close()


def test_sweep_t1_stores_five_minute_bars(dagbag, md_dsn: str) -> None:
    asyncio.run(truncate_data(md_dsn))
    run = dagbag.get_dag("md_sweep_t1").test(logical_date=LOGICAL)
    assert run.state == "success"
    got = asyncio.run(_tier_bars(md_dsn, "T1"))
    assert len(got) == 20
    # Friday's 78 five-minute bars plus Monday 14:30..14:55 (the 14:55 bar ended at 15:00)
    assert {n for n, _ in got.values()} == {84}
    assert {last for _, last in got.values()} == {datetime(2026, 11, 23, 14, 55, tzinfo=UTC)}


def test_sweep_t2_stores_daily_bars_on_every_exchange(dagbag, md_dsn: str) -> None:
    asyncio.run(truncate_data(md_dsn))
    after_ny_close = datetime(2026, 11, 23, 21, 15, tzinfo=UTC)
    run = dagbag.get_dag("md_sweep_t2").test(logical_date=after_ny_close)
    assert run.state == "success"
    got = asyncio.run(_tier_bars(md_dsn, "T2"))
    assert {"VOD.L", "7203.T", "MRK"} <= set(got)
    # initial_sessions = 20: the 20 latest completed sessions, Monday's included (Tokyo was closed)
    assert got["MRK"] == (20, datetime(2026, 11, 23, tzinfo=UTC))
    assert got["VOD.L"][1] == datetime(2026, 11, 23, tzinfo=UTC)
    assert got["7203.T"][1] == datetime(2026, 11, 20, tzinfo=UTC)


def backfill_queue_events(run_id: str) -> list[dict]:
    """Events of the backfill-queue asset that a run's task instances emitted (metadata database)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from market_data.airflow_rest import BACKFILL_QUEUE_ASSET

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == BACKFILL_QUEUE_ASSET, AssetEvent.source_run_id == run_id)
        ).all()
        return [
            {"task_id": e.source_task_id, "map_index": e.source_map_index, "extra": e.extra} for e in events
        ]


def test_a_sweep_batch_that_queues_gaps_emits_a_backfill_queue_event_and_one_that_does_not_emits_none(
    dagbag, md_dsn: str, restore_default_policy
) -> None:
    import re
    from pathlib import Path

    from market_data.policy.store import reload_policy

    default = (Path(__file__).resolve().parents[2] / "include" / "policy.toml").read_text()
    dropping = re.sub(r"^drop_rate = 0.0$", "drop_rate = 0.01", default, count=1, flags=re.M)
    dropping = re.sub(r'^drop_heal = "10m"$', 'drop_heal = "3650d"', dropping, count=1, flags=re.M)
    dropping = re.sub(  # only the provider that drops bars serves the tier
        r'(\[providers\.synthetic_backup\]\nkind = "synthetic"\n)enabled = true',
        r"\1enabled = false",
        dropping,
    )
    assert dropping.count("0.01") > default.count("0.01") and "enabled = false\npriority = 20" in dropping

    async def reload(body: str) -> None:
        c = await db.connect(md_dsn)
        try:
            await reload_policy(c, body, actor="tests")
        finally:
            await c.close()

    async def gap_jobs() -> int:
        c = await db.connect(md_dsn)
        try:
            return int(await c.fetchval("SELECT count(*) FROM backfill_jobs WHERE source = 'gap'"))
        finally:
            await c.close()

    dag = dagbag.get_dag("md_sweep_t0")
    asyncio.run(truncate_data(md_dsn))
    quiet = dag.test(logical_date=LOGICAL)  # every bar delivered: no gap, no event
    assert quiet.state == "success" and asyncio.run(gap_jobs()) == 0
    assert backfill_queue_events(quiet.run_id) == []

    asyncio.run(truncate_data(md_dsn))
    asyncio.run(reload(dropping))
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    assert asyncio.run(gap_jobs()) > 0
    events = backfill_queue_events(run.run_id)
    assert [(e["task_id"], e["map_index"]) for e in events] == [("sweep", 0)]
    assert events[0]["extra"]["tier"] == "T0" and events[0]["extra"]["ranges"] > 0
