"""Any timeframe on /history: golden built bars in real sessions, as_of, completeness, pages, CSV.

Sessions (UTC): New York's early close of 2025-11-28 (14:30-18:00), the Mondays after the DST
switches (2025-03-10 opens 13:30, 2025-11-03 opens 14:30), Tokyo 2025-11-27 (00:00-02:30 and
03:30-06:30) and London 2025-11-27 (08:00-16:30). AAPL stores 1m bars (T0); VOD.L and 7203.T
are T2 (1d) symbols that also hold the 1m bars these tests write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from market_data.ingest.pit_write import write_bars
from market_data.records import Bar, Interval
from tests.api.stocks_data import iso, session_bars

URL = "/stocks/{}/history"
EARLY_CLOSE = datetime(2025, 11, 28, 14, 30, tzinfo=UTC)
WEDNESDAY = datetime(2025, 11, 26, 14, 30, tzinfo=UTC)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def expected_bar(bars: list[Bar]) -> dict[str, object]:
    """A bar built by hand from its base bars, the way the README says."""
    volume = sum(b.volume for b in bars)
    return {
        "ts_first_base": iso(bars[0].ts),
        "open": bars[0].open,
        "high": max(b.high for b in bars),
        "low": min(b.low for b in bars),
        "close": bars[-1].close,
        "volume": volume,
        "vwap": sum((b.vwap or 0) * b.volume for b in bars) / volume,
        "trade_count": sum(b.trade_count or 0 for b in bars),
        "base_bars": len(bars),
    }


def matches(got: dict[str, object], want: dict[str, object]) -> bool:
    return (
        got["open"] == want["open"]
        and got["high"] == want["high"]
        and got["low"] == want["low"]
        and got["close"] == want["close"]
        and got["volume"] == want["volume"]
        and got["trade_count"] == want["trade_count"]
        and got["base_bars"] == want["base_bars"]
        and abs(float(got["vwap"]) - float(want["vwap"])) < 1e-9  # type: ignore[arg-type]
    )


async def history(client: AsyncTestClient, symbol: str, **params: object) -> dict:
    r = await client.get(URL.format(symbol), params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def store(conn, bars: list[Bar]) -> list[Bar]:
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    return bars


async def test_daily_bars_of_a_symbol_that_stores_minutes_are_built_from_them(client, conn) -> None:
    wednesday = await store(conn, session_bars(start=WEDNESDAY, minutes=390))
    friday = await store(conn, session_bars(start=EARLY_CLOSE, minutes=210))
    body = await history(
        client, "AAPL", interval="1d", start="2025-11-24T00:00:00Z", end="2025-12-01T00:00:00Z"
    )
    assert body["built_from"] == "1m" and body["interval"] == "1d" and body["align"] is None
    assert [b["ts"] for b in body["bars"]] == ["2025-11-26T00:00:00Z", "2025-11-28T00:00:00Z"]
    assert matches(body["bars"][0], expected_bar(wednesday)) and matches(
        body["bars"][1], expected_bar(friday)
    )
    assert [b["complete"] for b in body["bars"]] == [True, True]
    assert body["bars"][1]["base_bars"] == 210  # the early close: 09:30-13:00


async def test_hourly_bars_around_the_early_close_start_at_the_open_and_end_at_the_close(
    client, conn
) -> None:
    minutes = await store(conn, session_bars(start=EARLY_CLOSE, minutes=210))
    body = await history(
        client, "AAPL", interval="1h", start="2025-11-28T00:00:00Z", end="2025-11-29T00:00:00Z"
    )
    assert [b["ts"][11:16] for b in body["bars"]] == ["14:30", "15:30", "16:30", "17:30"]
    assert [b["base_bars"] for b in body["bars"]] == [60, 60, 60, 30]
    for bar, lo in zip(body["bars"], (0, 60, 120, 180), strict=True):
        assert matches(bar, expected_bar(minutes[lo : lo + 60]))
    assert body["align"] == "session" and all(b["complete"] for b in body["bars"])
    clock = await history(
        client, "AAPL", interval="1h", align="clock", start="2025-11-28T00:00:00Z", end="2025-11-29T00:00:00Z"
    )
    assert [(b["ts"][11:16], b["base_bars"]) for b in clock["bars"]] == [
        ("14:30", 30),
        ("15:00", 60),
        ("16:00", 60),
        ("17:00", 60),
    ]


@pytest.mark.parametrize(
    "friday,monday,friday_open_hour,monday_open_hour",
    [
        (utc(2025, 3, 7, 14, 30), utc(2025, 3, 10, 13, 30), 14, 13),  # EST -> EDT
        (utc(2025, 10, 31, 13, 30), utc(2025, 11, 3, 14, 30), 13, 14),  # EDT -> EST
    ],
    ids=["spring 2025-03-10", "autumn 2025-11-03"],
)
async def test_hourly_bars_follow_the_open_across_a_dst_switch(
    client, conn, friday, monday, friday_open_hour, monday_open_hour
) -> None:
    await store(conn, session_bars(start=friday) + session_bars(start=monday))
    body = await history(
        client,
        "AAPL",
        interval="1h",
        start=iso(friday - timedelta(hours=14)),
        end=iso(monday + timedelta(hours=9)),
    )
    want = [f"{friday.date()}T{friday_open_hour + i:02d}:30:00Z" for i in range(7)]
    want += [f"{monday.date()}T{monday_open_hour + i:02d}:30:00Z" for i in range(7)]
    assert [b["ts"] for b in body["bars"]] == want
    assert [b["base_bars"] for b in body["bars"]] == ([60] * 6 + [30]) * 2  # 15:30-16:00 local is short


async def test_tokyo_bars_never_span_the_lunch_break(client, conn) -> None:
    morning = await store(
        conn, session_bars("7203.T", start=utc(2025, 11, 27, 0, 0), minutes=150, mic="XTKS")
    )
    afternoon = await store(
        conn, session_bars("7203.T", start=utc(2025, 11, 27, 3, 30), minutes=180, mic="XTKS")
    )
    body = await history(
        client, "7203.T", interval="1h", start="2025-11-27T00:00:00Z", end="2025-11-28T00:00:00Z"
    )
    assert body["built_from"] == "1m"
    assert [(b["ts"][11:16], b["base_bars"]) for b in body["bars"]] == [
        ("00:00", 60),
        ("01:00", 60),
        ("02:00", 30),  # 11:00-11:30 JST, then lunch
        ("03:30", 60),  # 12:30 JST
        ("04:30", 60),
        ("05:30", 60),
    ]
    assert matches(body["bars"][2], expected_bar(morning[120:150]))
    assert matches(body["bars"][3], expected_bar(afternoon[:60]))
    clock = await history(
        client,
        "7203.T",
        interval="2h",
        align="clock",
        start="2025-11-27T00:00:00Z",
        end="2025-11-28T00:00:00Z",
    )
    assert [(b["ts"][11:16], b["base_bars"]) for b in clock["bars"]] == [
        ("00:00", 60),  # 09:00-10:00 JST (the 08:00-10:00 clock bucket from the open)
        ("01:00", 90),  # 10:00-11:30
        ("03:30", 90),  # 12:30-14:00
        ("05:00", 90),  # 14:00-15:30
    ]


async def test_a_london_session_in_2h_bars_and_as_a_day(client, conn) -> None:
    minutes = await store(conn, session_bars("VOD.L", start=utc(2025, 11, 27, 8), minutes=510, mic="XLON"))
    body = await history(
        client, "VOD.L", interval="2h", start="2025-11-27T00:00:00Z", end="2025-11-28T00:00:00Z"
    )
    assert [(b["ts"][11:16], b["base_bars"]) for b in body["bars"]] == [
        ("08:00", 120),
        ("10:00", 120),
        ("12:00", 120),
        ("14:00", 120),
        ("16:00", 30),
    ]
    assert matches(body["bars"][4], expected_bar(minutes[480:]))
    # VOD.L is a T2 symbol: the policy stores its 1d bars, so 1d is read as stored, not built
    daily = await store(
        conn, session_bars("VOD.L", interval=Interval.D1, start=utc(2025, 11, 27), minutes=1440, mic="XLON")
    )
    day = await history(
        client, "VOD.L", interval="1d", start="2025-11-27T00:00:00Z", end="2025-11-28T00:00:00Z"
    )
    assert day["built_from"] is None and [b["close"] for b in day["bars"]] == [daily[0].close]
    assert day["bars"][0]["base_bars"] is None and day["bars"][0]["complete"] is True


async def test_weeks_and_months_of_a_daily_symbol_are_built_from_its_daily_bars(client, conn) -> None:
    days = await store(
        conn,
        session_bars("MRK", interval=Interval.D1, start=utc(2025, 10, 27), minutes=36 * 1440, mic="XNYS"),
    )
    weeks = await history(
        client, "MRK", interval="1w", start="2025-10-27T00:00:00Z", end="2025-12-01T00:00:00Z"
    )
    assert weeks["built_from"] == "1d"
    assert [(b["ts"][:10], b["base_bars"]) for b in weeks["bars"]] == [
        ("2025-10-27", 5),
        ("2025-11-03", 5),
        ("2025-11-10", 5),
        ("2025-11-17", 5),
        ("2025-11-24", 4),  # Thanksgiving
    ]
    november = [b for b in days if b.ts.month == 11]
    months = await history(
        client, "MRK", interval="1mo", start="2025-11-01T00:00:00Z", end="2025-12-01T00:00:00Z"
    )
    assert len(months["bars"]) == 1 and matches(months["bars"][0], expected_bar(november))
    assert months["bars"][0]["ts"] == "2025-11-01T00:00:00Z" and months["bars"][0]["complete"]


FRIDAY = {"start": "2025-11-28T00:00:00Z", "end": "2025-11-29T00:00:00Z"}


async def test_a_built_bar_uses_only_the_versions_known_at_as_of(client, conn) -> None:
    minutes = await store(conn, session_bars(start=EARLY_CLOSE, minutes=210))
    known = await conn.fetchval("SELECT max(as_of) FROM bars")
    revised = msgspec.structs.replace(minutes[75], high=9999.0, close=1.0)  # 15:45: the second hour
    await store(conn, [revised])
    now = await history(client, "AAPL", interval="1h", **FRIDAY)
    then = await history(client, "AAPL", interval="1h", as_of=iso(known), **FRIDAY)
    assert (
        now["bars"][1]["high"] == 9999.0 and then["bars"][1]["high"] == expected_bar(minutes[60:120])["high"]
    )
    assert matches(then["bars"][1], expected_bar(minutes[60:120]))
    # a built bar's as_of is its newest base version's: the revision moved the second hour only
    assert (
        now["bars"][1]["as_of"] > then["bars"][1]["as_of"]
        and now["bars"][0]["as_of"] == then["bars"][0]["as_of"]
    )
    before = await history(client, "AAPL", interval="1h", as_of=iso(known - timedelta(seconds=1)), **FRIDAY)
    assert before["bars"] == []


async def confirm_empty(conn, symbol: str, start: datetime, minutes: int, confirmed_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO confirmed_empty_ranges (symbol, interval, start_ts, end_ts, provider, confirmed_at)
           VALUES ($1, '1m', $2, $3, 'synthetic', $4)""",
        symbol,
        start,
        start + timedelta(minutes=minutes),
        confirmed_at,
    )


async def test_a_bar_with_a_missing_base_bar_is_incomplete_and_a_confirmed_empty_one_is_not(
    client, conn
) -> None:
    minutes = session_bars(start=EARLY_CLOSE, minutes=210)
    stored = [b for i, b in enumerate(minutes) if i not in (10, 70, 71)]  # 14:40; 15:40 and 15:41
    await store(conn, stored)
    confirmed_at = datetime.now(UTC)
    await confirm_empty(conn, "AAPL", minutes[70].ts, 2, confirmed_at)
    body = await history(client, "AAPL", interval="1h", **FRIDAY)
    assert [(b["complete"], b["base_bars"]) for b in body["bars"]] == [
        (False, 59),
        (True, 58),
        (True, 60),
        (True, 30),
    ]
    day = await history(client, "AAPL", interval="1d", **FRIDAY)
    assert day["bars"][0]["complete"] is False and day["bars"][0]["base_bars"] == 207
    # read as of before the provider confirmed 15:40-15:42 empty: those minutes were missing then
    then = await history(
        client, "AAPL", interval="1h", as_of=iso(confirmed_at - timedelta(microseconds=1)), **FRIDAY
    )
    assert [b["complete"] for b in then["bars"]] == [False, False, True, True]
    # the minutes stored late complete the first hour
    await store(conn, [minutes[10]])
    assert (await history(client, "AAPL", interval="1h", **FRIDAY))["bars"][0]["complete"] is True


async def test_the_running_bar_is_incomplete(client, conn, monkeypatch) -> None:
    from api.stocks import history as history_module

    monday = utc(2026, 11, 23, 14, 30)
    await store(conn, session_bars(start=monday, minutes=90))  # up to 16:00 UTC
    monkeypatch.setattr(history_module, "utcnow", lambda: utc(2026, 11, 23, 16, 0, 30))
    body = (await client.get("/stocks/AAPL/intraday", params={"interval": "1h"})).json()
    assert body["built_from"] == "1m" and body["market_open"] is True
    assert [(b["ts"][11:16], b["complete"], b["base_bars"]) for b in body["bars"]] == [
        ("14:30", True, 60),
        ("15:30", False, 30),  # 15:30-16:30: half of it has not happened yet
    ]
    monkeypatch.undo()  # /history reads at the real now: the versions above were stored after 16:00
    history_body = await history(
        client, "AAPL", interval="1d", start="2026-11-23T00:00:00Z", end="2026-11-24T00:00:00Z"
    )
    assert history_body["bars"][0]["complete"] is False and history_body["bars"][0]["base_bars"] == 90
