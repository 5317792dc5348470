"""GET /stocks/{symbol}/intraday: the current or last session's bars, at chosen clock times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient

from api.stocks import history
from market_data.ingest.pit_write import write_bars
from market_data.records import Interval
from tests.api.stocks_data import MON_OPEN, TUE_OPEN, session_bars

FRI_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def at(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(history, "utcnow", lambda: when)


@pytest.fixture
async def three_sessions(conn) -> None:
    for start in (FRI_OPEN, MON_OPEN, TUE_OPEN):
        await write_bars(conn, session_bars(start=start), policy_version=1, advance_cursors=True)


async def test_open_market_shows_todays_session_so_far(client: AsyncTestClient, conn, monkeypatch) -> None:
    await write_bars(conn, session_bars(start=FRI_OPEN), policy_version=1, advance_cursors=True)
    await write_bars(conn, session_bars(minutes=90), policy_version=1, advance_cursors=True)
    at(monkeypatch, datetime(2026, 11, 23, 16, 0, 30, tzinfo=UTC))
    r = await client.get("/stocks/aapl/intraday")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "AAPL" and body["interval"] == "1m" and body["exchange_mic"] == "XNAS"
    assert (body["session_open"], body["session_close"]) == ("2026-11-23T14:30:00Z", "2026-11-23T21:00:00Z")
    assert body["market_open"] is True
    assert body["count"] == 90
    assert (
        body["bars"][0]["ts"] == "2026-11-23T14:30:00Z" and body["bars"][-1]["ts"] == "2026-11-23T15:59:00Z"
    )


async def test_before_the_open_shows_the_last_session(
    client: AsyncTestClient, three_sessions, monkeypatch
) -> None:
    at(monkeypatch, datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    body = (await client.get("/stocks/AAPL/intraday")).json()
    assert body["session_open"] == "2026-11-23T14:30:00Z" and body["market_open"] is False
    assert body["count"] == 390 and body["bars"][0]["ts"] == "2026-11-23T14:30:00Z"


async def test_after_the_close_shows_the_session_that_traded_today(
    client: AsyncTestClient, three_sessions, monkeypatch
) -> None:
    at(monkeypatch, datetime(2026, 11, 24, 23, 0, tzinfo=UTC))
    body = (await client.get("/stocks/AAPL/intraday")).json()
    assert body["session_open"] == "2026-11-24T14:30:00Z" and body["market_open"] is False
    assert body["count"] == 390 and body["bars"][-1]["ts"] == "2026-11-24T20:59:00Z"


async def test_weekend_shows_fridays_early_close(client: AsyncTestClient, conn, monkeypatch) -> None:
    at(monkeypatch, datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    body = (await client.get("/stocks/AAPL/intraday")).json()
    # the day after Thanksgiving closes at 13:00 New York time
    assert (body["session_open"], body["session_close"]) == ("2026-11-27T14:30:00Z", "2026-11-27T18:00:00Z")
    assert body["count"] == 0 and body["bars"] == []


async def test_other_intervals_and_a_lunch_break(client: AsyncTestClient, conn, monkeypatch) -> None:
    await write_bars(conn, session_bars(interval=Interval.M5), policy_version=1, advance_cursors=True)
    at(monkeypatch, datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    body = (await client.get("/stocks/AAPL/intraday", params={"interval": "5m"})).json()
    assert body["interval"] == "5m" and body["count"] == 78
    assert body["bars"][1]["ts"] == "2026-11-23T14:35:00Z"
    # Tokyo at 12:00 local time: in the lunch break, today's session, market not open
    tokyo_open = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    morning = session_bars("7203.T", start=tokyo_open, minutes=150, mic="XTKS")
    await write_bars(conn, morning, policy_version=1, advance_cursors=True)
    at(monkeypatch, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
    body = (await client.get("/stocks/7203.T/intraday")).json()
    assert body["session_open"] == "2026-11-24T00:00:00Z" and body["market_open"] is False
    assert body["count"] == len(morning) == 150


@pytest.mark.parametrize(
    "path,params,status,parameter",
    [
        ("/stocks/AAPL/intraday", {"interval": "1d"}, 400, "interval"),
        ("/stocks/AAPL/intraday", {"interval": "60m"}, 400, "interval"),
        ("/stocks/AA$PL/intraday", {}, 400, "symbol"),
        ("/stocks/ZZZZZ/intraday", {}, 404, "symbol"),
    ],
)
async def test_intraday_errors(client: AsyncTestClient, path, params, status, parameter) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["parameter"] == parameter and r.json()["detail"].startswith(parameter)
