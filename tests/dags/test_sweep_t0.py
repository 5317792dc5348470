"""md_sweep_t0 under dag.test(): bars land, cursors move, and a second run adds nothing."""

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
            "t0": [
                r["symbol"]
                for r in await conn.fetch("SELECT symbol FROM symbol_universe WHERE tier='T0' AND active")
            ],
        }
    finally:
        await conn.close()


def test_sweep_t0_loads_history_advances_cursors_and_is_idempotent(dagbag, md_dsn: str) -> None:
    asyncio.run(truncate_data(md_dsn))
    dag = dagbag.get_dag("md_sweep_t0")

    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    first = asyncio.run(snapshot(md_dsn))
    # Friday's full session (390) plus Monday 14:30..14:59 (30) for every T0 symbol
    assert first["per_symbol"] == {s: 420 for s in first["t0"]}
    assert first["cursors"] == {(s, "1m"): datetime(2026, 11, 23, 14, 59, tzinfo=UTC) for s in first["t0"]}

    rerun = dag.test(logical_date=LOGICAL, run_after=LOGICAL)
    assert rerun.state == "success"
    second = asyncio.run(snapshot(md_dsn))
    assert second == first
