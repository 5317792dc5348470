"""GET /stocks/bars and /stocks/snapshots: many symbols in one request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.stocks import multi
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.records import Interval, Quote
from tests.api.stocks_data import MON_OPEN, MON_RANGE, iso, session_bars


@pytest.fixture
async def two_symbols(conn) -> dict[str, list]:
    data = {s: session_bars(s) for s in ("AAPL", "MSFT")}
    for bars in data.values():
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    return data


async def test_bars_of_several_symbols(client: AsyncTestClient, two_symbols) -> None:
    r = await client.get("/stocks/bars", params={"symbols": "msft, aapl,MSFT", **MON_RANGE, "limit": 390})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["bars"]) == ["MSFT", "AAPL"]  # request order, duplicates once
    assert body["truncated"] == [] and body["limit"] == 390 and body["interval"] == "1m"
    for sym, bars in two_symbols.items():
        assert [b["close"] for b in body["bars"][sym]] == [b.close for b in bars]
        history = (await client.get(f"/stocks/{sym}/history", params={**MON_RANGE, "limit": 390})).json()
        assert body["bars"][sym] == history["bars"]


async def test_limit_is_per_symbol_and_truncation_is_reported(
    client: AsyncTestClient, conn, two_symbols
) -> None:
    await write_bars(conn, session_bars("NVDA", minutes=5), policy_version=1, advance_cursors=True)
    body = (
        await client.get("/stocks/bars", params={"symbols": "AAPL,NVDA,AMZN", **MON_RANGE, "limit": 10})
    ).json()
    assert [len(body["bars"][s]) for s in ("AAPL", "NVDA", "AMZN")] == [10, 5, 0]
    assert body["truncated"] == ["AAPL"]
    assert body["bars"]["AAPL"][0]["ts"] == "2026-11-23T14:30:00Z"
    # without start: the latest `limit` bars before end, oldest first
    tail = (
        await client.get("/stocks/bars", params={"symbols": "AAPL,NVDA", "end": MON_RANGE["end"], "limit": 3})
    ).json()
    assert [b["ts"][11:16] for b in tail["bars"]["AAPL"]] == ["20:57", "20:58", "20:59"]
    assert [b["ts"][11:16] for b in tail["bars"]["NVDA"]] == ["14:32", "14:33", "14:34"]
    assert tail["start"] is None and tail["truncated"] == ["AAPL", "NVDA"]


async def test_bars_as_of(client: AsyncTestClient, conn, two_symbols) -> None:
    known = await conn.fetchval("SELECT max(as_of) FROM bars")
    changed = msgspec.structs.replace(two_symbols["AAPL"][0], close=1.5)
    await write_bars(conn, [changed], policy_version=1, advance_cursors=True)
    params = {"symbols": "AAPL", **MON_RANGE, "limit": 1}
    assert (await client.get("/stocks/bars", params=params)).json()["bars"]["AAPL"][0]["close"] == 1.5
    then = (await client.get("/stocks/bars", params={**params, "as_of": known.isoformat()})).json()
    assert then["bars"]["AAPL"][0]["close"] == two_symbols["AAPL"][0].close


@pytest.mark.parametrize(
    "params,status,parameter,words",
    [
        ({"symbols": "AAPL,ZZZZZ,QQQQQ"}, 404, "symbols", ["ZZZZZ", "QQQQQ"]),
        ({"symbols": "AAPL,AA$PL"}, 400, "symbols", ["AA$PL"]),
        ({"symbols": " , ,"}, 400, "symbols", []),
        ({"symbols": ""}, 400, "symbols", []),
        ({}, 400, "symbols", []),
        ({"symbols": ",".join(f"S{i}" for i in range(101))}, 400, "symbols", ["100"]),
        ({"symbols": "AAPL", "interval": "60m"}, 400, "interval", []),
        ({"symbols": "AAPL", "limit": 0}, 400, "limit", []),
        ({"symbols": "AAPL", "start": "2026-11-23T15:00:00Z", "end": "2026-11-23T14:00:00Z"}, 400, "end", []),
        (
            {"symbols": "AAPL", "start": "2026-01-01T00:00:00Z", "end": "2026-11-23T00:00:00Z"},
            400,
            "start",
            [],
        ),
    ],
)
async def test_bars_errors(client: AsyncTestClient, params, status, parameter, words) -> None:
    r = await client.get("/stocks/bars", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["parameter"] == parameter and body["detail"].startswith(parameter)
    for w in words:
        assert w in body["detail"]


async def test_total_bars_are_bounded(client: AsyncTestClient, monkeypatch) -> None:
    monkeypatch.setattr(multi, "MAX_TOTAL_BARS", 1000)
    r = await client.get("/stocks/bars", params={"symbols": "AAPL,MSFT", "limit": 501})
    assert r.status_code == 400 and r.json()["parameter"] == "limit"
    assert (
        await client.get("/stocks/bars", params={"symbols": "AAPL,MSFT", "limit": 500})
    ).status_code == 200


async def test_snapshots(client: AsyncTestClient, conn) -> None:
    minute = session_bars()
    await write_bars(conn, minute, policy_version=1, advance_cursors=True)
    daily = session_bars(interval=Interval.D1, start=MON_OPEN - timedelta(days=5), minutes=5 * 1440)
    assert [iso(b.ts)[:10] for b in daily][-2:] == ["2026-11-20", "2026-11-23"]
    await write_bars(conn, daily, policy_version=1, advance_cursors=True)
    q = Quote(symbol="AAPL", ts=datetime(2026, 11, 23, 21, 0, 5, tzinfo=UTC), provider="synthetic", last=1.25)
    await write_quotes(conn, [q], policy_version=1)
    r = await client.get("/stocks/snapshots", params={"symbols": "aapl,MSFT"})
    assert r.status_code == 200, r.text
    snaps = r.json()["snapshots"]
    assert list(snaps) == ["AAPL", "MSFT"]
    a = snaps["AAPL"]
    assert a["exchange_mic"] == "XNAS" and isinstance(a["market_open"], bool)
    assert a["latest_quote"]["last"] == 1.25 and a["latest_quote"]["bid"] is None
    assert a["minute_bar"]["ts"] == "2026-11-23T20:59:00Z" and a["minute_bar"]["close"] == minute[-1].close
    assert a["daily_bar"]["ts"] == "2026-11-23T00:00:00Z" and a["daily_bar"]["close"] == daily[-1].close
    assert a["prev_daily_bar"]["ts"] == "2026-11-20T00:00:00Z"
    assert snaps["MSFT"] == {
        "symbol": "MSFT",
        "exchange_mic": "XNAS",
        "market_open": a["market_open"],
        "latest_quote": None,
        "minute_bar": None,
        "daily_bar": None,
        "prev_daily_bar": None,
    }


async def test_snapshots_use_the_current_version(client: AsyncTestClient, conn) -> None:
    daily = session_bars(interval=Interval.D1, start=MON_OPEN, minutes=1440)
    await write_bars(conn, daily, policy_version=1, advance_cursors=True)
    await write_bars(
        conn, [msgspec.structs.replace(daily[0], close=7.0)], policy_version=1, advance_cursors=True
    )
    a = (await client.get("/stocks/snapshots", params={"symbols": "AAPL"})).json()["snapshots"]["AAPL"]
    assert a["daily_bar"]["close"] == 7.0 and a["prev_daily_bar"] is None


async def test_snapshot_errors(client: AsyncTestClient) -> None:
    r = await client.get("/stocks/snapshots", params={"symbols": "AAPL,NOPE1"})
    assert r.status_code == 404 and r.json()["parameter"] == "symbols" and "NOPE1" in r.json()["detail"]
    r = await client.get("/stocks/snapshots")
    assert r.status_code == 400 and r.json()["parameter"] == "symbols"
