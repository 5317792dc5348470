"""GET /stocks/{symbol}/coverage: per session, expected, stored, confirmed-empty, missing and queued bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from market_data.ingest.pit_write import write_bars
from tests.api.stocks_data import session_bars

URL = "/stocks/AAPL/coverage"
WEDNESDAY = datetime(2025, 11, 26, 14, 30, tzinfo=UTC)
FRIDAY = datetime(2025, 11, 28, 14, 30, tzinfo=UTC)  # closes 18:00 UTC
WEEK = {"start": "2025-11-24T00:00:00Z", "end": "2025-11-29T00:00:00Z"}


async def test_each_session_counts_stored_confirmed_empty_missing_and_queued_bars(client, conn) -> None:
    wednesday = session_bars(start=WEDNESDAY)
    friday = session_bars(start=FRIDAY, minutes=210)
    kept = wednesday + [b for i, b in enumerate(friday) if not 30 <= i < 50]  # 15:00-15:20 not stored
    await write_bars(conn, kept, policy_version=1, advance_cursors=False)
    await conn.execute(
        """INSERT INTO confirmed_empty_ranges (symbol, interval, start_ts, end_ts, provider)
           VALUES ('AAPL', '1m', $1, $2, 'synthetic')""",
        FRIDAY + timedelta(minutes=30),
        FRIDAY + timedelta(minutes=35),
    )
    for status, minutes in (("queued", (35, 40)), ("running", (40, 42)), ("done", (42, 50))):
        await conn.execute(
            """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status)
               VALUES ('AAPL', '1m', $1, $2, 'T0', 1, 'gap', $3)""",
            FRIDAY + timedelta(minutes=minutes[0]),
            FRIDAY + timedelta(minutes=minutes[1]),
            status,
        )
    r = await client.get(URL, params=WEEK)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["interval"], body["counted"], body["exchange_mic"]) == ("1m", "1m", "XNAS")
    rows = {s["session"]: s for s in body["sessions"]}
    assert list(rows) == ["2025-11-24", "2025-11-25", "2025-11-26", "2025-11-28"]  # Thanksgiving: none
    assert rows["2025-11-26"] == {
        "session": "2025-11-26",
        "open": "2025-11-26T14:30:00Z",
        "close": "2025-11-26T21:00:00Z",
        "expected": 390,
        "stored": 390,
        "confirmed_empty": 0,
        "missing": 0,
        "queued_for_backfill": 0,
    }
    friday_row = rows["2025-11-28"]
    assert friday_row["close"] == "2025-11-28T18:00:00Z"
    assert (friday_row["expected"], friday_row["stored"], friday_row["confirmed_empty"]) == (210, 190, 5)
    assert (friday_row["missing"], friday_row["queued_for_backfill"]) == (15, 7)  # a done job queues nothing
    assert rows["2025-11-24"]["missing"] == 390 and rows["2025-11-24"]["stored"] == 0
    assert body["totals"] == {
        "expected": 390 * 3 + 210,
        "stored": 580,
        "confirmed_empty": 5,
        "missing": 390 * 2 + 15,
        "queued_for_backfill": 7,
    }
    # the same states as runs of adjacent bars per session: what /ui/{symbol} draws
    assert body["ranges"] == [
        {"state": "missing", "start": "2025-11-24T14:30:00Z", "end": "2025-11-24T21:00:00Z", "bars": 390},
        {"state": "missing", "start": "2025-11-25T14:30:00Z", "end": "2025-11-25T21:00:00Z", "bars": 390},
        {
            "state": "confirmed_empty",
            "start": "2025-11-28T15:00:00Z",
            "end": "2025-11-28T15:05:00Z",
            "bars": 5,
        },
        {"state": "queued", "start": "2025-11-28T15:05:00Z", "end": "2025-11-28T15:12:00Z", "bars": 7},
        {"state": "missing", "start": "2025-11-28T15:12:00Z", "end": "2025-11-28T15:20:00Z", "bars": 8},
    ]
    assert (body["revised"], body["revised_truncated"]) == ([], False)
    # the jobs themselves, readable without the ops token (a done job is not listed)
    assert body["backfills"] == [
        {"start": "2025-11-28T15:05:00Z", "end": "2025-11-28T15:10:00Z", "status": "queued", "source": "gap"},
        {
            "start": "2025-11-28T15:10:00Z",
            "end": "2025-11-28T15:12:00Z",
            "status": "running",
            "source": "gap",
        },
    ]


async def test_bars_with_more_than_one_version_are_listed_as_revised(client, conn) -> None:
    bars = session_bars(start=WEDNESDAY, minutes=10)
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    fixed = [msgspec.structs.replace(bars[i], close=bars[i].close + 1) for i in (3, 7)]
    await write_bars(conn, fixed, policy_version=1, advance_cursors=False)
    await write_bars(
        conn, [msgspec.structs.replace(fixed[0], close=1.0)], policy_version=1, advance_cursors=False
    )
    body = (await client.get(URL, params=WEEK)).json()
    assert [(r["ts"], r["versions"]) for r in body["revised"]] == [
        ("2025-11-26T14:33:00Z", 3),
        ("2025-11-26T14:37:00Z", 2),
    ]
    first = body["revised"][0]
    assert first["first_as_of"] < first["as_of"] and body["revised_truncated"] is False


async def test_a_lunch_break_splits_a_range_not_stored(client, conn) -> None:
    tokyo = datetime(2025, 11, 26, 0, 0, tzinfo=UTC)  # 09:00 JST; lunch 02:30-03:30 UTC
    await write_bars(
        conn,
        session_bars("7203.T", start=tokyo, minutes=1, mic="XTKS"),
        policy_version=1,
        advance_cursors=False,
    )
    day = {"start": "2025-11-26T00:00:00Z", "end": "2025-11-27T00:00:00Z", "interval": "1m"}
    body = (await client.get("/stocks/7203.T/coverage", params=day)).json()
    assert body["ranges"] == [
        {"state": "missing", "start": "2025-11-26T00:01:00Z", "end": "2025-11-26T02:30:00Z", "bars": 149},
        {"state": "missing", "start": "2025-11-26T03:30:00Z", "end": "2025-11-26T06:30:00Z", "bars": 180},
    ]


async def test_a_built_timeframe_counts_the_interval_it_is_built_from(client, conn) -> None:
    body = (await client.get(URL, params={**WEEK, "interval": "1h"})).json()
    assert (body["interval"], body["counted"]) == ("1h", "1m") and body["totals"]["expected"] == 390 * 3 + 210
    daily = (await client.get("/stocks/MRK/coverage", params=WEEK)).json()
    assert daily["counted"] == "1d" and [s["expected"] for s in daily["sessions"]] == [1, 1, 1, 1]


async def test_the_default_range_is_the_last_seven_days(client, conn) -> None:
    body = (await client.get(URL)).json()
    start, end = (datetime.fromisoformat(body[k]) for k in ("start", "end"))
    assert end - start == timedelta(days=7) and abs(end - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"start": "2025-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"}, "start"),  # > 93 days of 1m
        ({"start": "2025-11-28T00:00:00Z", "end": "2025-11-27T00:00:00Z"}, "end"),
        ({"interval": "60m"}, "interval"),
        ({"interval": "1h", "start": "x"}, "start"),
    ],
)
async def test_bad_coverage_requests_are_400(client, params, parameter) -> None:
    r = await client.get(URL, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter and r.json()["detail"].startswith(parameter)
    assert (await client.get("/stocks/MRK/coverage", params={"interval": "5m"})).status_code == 400
