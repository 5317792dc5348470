"""GET /stocks/{symbol}/price and /history against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Quote

MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def bars(symbol="AAPL", minutes=390, interval=Interval.M1):
    return SyntheticProvider().bars_for(
        symbol, "XNAS", interval, MON_OPEN, MON_OPEN + timedelta(minutes=minutes), LATER
    )


async def test_price_is_404_until_data_exists(client: AsyncTestClient) -> None:
    r = await client.get("/stocks/AAPL/price")
    assert r.status_code == 404
    assert r.json()["parameter"] == "symbol"


async def test_price_falls_back_to_the_latest_bar_close(client: AsyncTestClient, conn) -> None:
    b = bars()
    await write_bars(conn, b, policy_version=1, advance_cursors=True)
    r = await client.get("/stocks/aapl/price")
    assert r.status_code == 200
    body = r.json()
    assert body["symbol"] == "AAPL" and body["source"] == "bar:1m"
    assert body["price"] == b[-1].close
    assert body["ts"] == "2026-11-23T21:00:00Z"  # the end of the 20:59 bar
    assert body["provider"] == "synthetic"
    assert body["exchange_mic"] == "XNAS"
    assert isinstance(body["market_open"], bool)


async def test_price_prefers_a_newer_quote(client: AsyncTestClient, conn) -> None:
    await write_bars(conn, bars(), policy_version=1, advance_cursors=True)
    q = Quote(
        symbol="AAPL",
        ts=datetime(2026, 11, 23, 21, 0, 5, tzinfo=UTC),
        provider="synthetic",
        last=123.45,
        bid=123.4,
        ask=123.5,
    )
    await write_quotes(conn, [q], policy_version=1)
    body = (await client.get("/stocks/AAPL/price")).json()
    assert (body["source"], body["price"], body["bid"], body["ask"]) == (
        "quote",
        123.45,
        123.4,
        123.5,
    )


async def test_unknown_symbol_is_404_and_malformed_is_400(client: AsyncTestClient) -> None:
    r = await client.get("/stocks/ZZZZZ/price")
    assert r.status_code == 404 and "ZZZZZ" in r.json()["detail"]
    r = await client.get("/stocks/AA$PL/history")
    assert r.status_code == 400 and r.json()["parameter"] == "symbol"


async def test_history_returns_bars_in_range_oldest_first(client: AsyncTestClient, conn) -> None:
    b = bars()
    await write_bars(conn, b, policy_version=1, advance_cursors=True)
    r = await client.get(
        "/stocks/AAPL/history",
        params={"interval": "1m", "start": "2026-11-23T15:00:00Z", "end": "2026-11-23T15:10:00Z"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 10 and body["interval"] == "1m"
    assert body["bars"][0]["ts"] == "2026-11-23T15:00:00Z"
    assert body["bars"][-1]["ts"] == "2026-11-23T15:09:00Z"
    assert body["bars"][0]["close"] == b[30].close


async def test_history_without_start_returns_the_latest_bars(client: AsyncTestClient, conn) -> None:
    await write_bars(conn, bars(), policy_version=1, advance_cursors=True)
    body = (await client.get("/stocks/AAPL/history", params={"limit": 5})).json()
    assert [x["ts"][11:16] for x in body["bars"]] == ["20:55", "20:56", "20:57", "20:58", "20:59"]


async def test_history_as_of_reads_the_version_known_then(client: AsyncTestClient, conn) -> None:
    b = bars(minutes=3)
    await write_bars(conn, b, policy_version=1, advance_cursors=True)
    first_as_of = await conn.fetchval("SELECT max(as_of) FROM bars")
    await write_bars(
        conn, [msgspec.structs.replace(b[1], close=999.0)], policy_version=1, advance_cursors=True
    )
    now_body = (
        await client.get(
            "/stocks/AAPL/history",
            params={"start": "2026-11-23T14:30:00Z", "end": "2026-11-23T14:33:00Z"},
        )
    ).json()
    assert [x["close"] for x in now_body["bars"]][1] == 999.0
    then = (
        await client.get(
            "/stocks/AAPL/history",
            params={
                "start": "2026-11-23T14:30:00Z",
                "end": "2026-11-23T14:33:00Z",
                "as_of": first_as_of.isoformat(),
            },
        )
    ).json()
    assert [x["close"] for x in then["bars"]][1] == b[1].close
    assert then["as_of"] is not None


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"interval": "60m"}, "interval"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01T00:00:00Z"}, "end"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"start": "2026-11-23T15:00:00Z", "end": "2026-11-23T14:00:00Z"}, "end"),
        ({"as_of": "soon"}, "as_of"),
    ],
)
async def test_bad_history_parameters_are_400_naming_the_parameter(
    client: AsyncTestClient, params, parameter
) -> None:
    r = await client.get("/stocks/AAPL/history", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == parameter
    assert body["detail"].startswith(parameter)
    assert "Traceback" not in r.text
