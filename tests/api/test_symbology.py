"""Securities, not strings: a rename keeps one history, a reused ticker never mixes two."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from litestar.testing import AsyncTestClient

from market_data.corporate_actions import ActionKind, CorporateAction, record_actions
from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.universe import UniverseEntry, upsert_universe
from tests.api.ws_harness import connect, live_server, notify_bar, recv, send
from tests.corporate_actions_data import NOW

RENAME = CorporateAction(
    symbol="META",
    kind=ActionKind.TICKER_CHANGE,
    ex_date=date(2022, 6, 9),
    provider="synthetic",
    old_ticker="FB",
    new_ticker="META",
)
AROUND_RENAME = {"interval": "1d", "start": "2022-06-01T00:00:00Z", "end": "2022-06-15T00:00:00Z"}


async def _store_daily(conn, symbol: str, start: datetime, end: datetime) -> None:
    bars = SyntheticProvider().bars_for(symbol, "XNAS", Interval.D1, start, end, NOW)
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)


async def test_meta_history_spans_the_fb_days_and_fb_resolves_to_the_same_security(
    client: AsyncTestClient, conn
) -> None:
    await record_actions(conn, [RENAME], NOW)
    await _store_daily(conn, "META", datetime(2022, 6, 1, tzinfo=UTC), datetime(2022, 6, 15, tzinfo=UTC))
    meta = await client.get("/stocks/META/history", params=AROUND_RENAME)
    assert meta.status_code == 200, meta.text
    days = [b["ts"][:10] for b in meta.json()["bars"]]
    assert (
        days[0] == "2022-06-01" and "2022-06-08" in days and "2022-06-09" in days and days[-1] == "2022-06-14"
    )
    fb = await client.get("/stocks/FB/history", params={**AROUND_RENAME, "end": "2022-06-09T00:00:00Z"})
    assert fb.status_code == 200, fb.text
    assert fb.json()["symbol"] == "META"
    assert fb.json()["bars"] == meta.json()["bars"][: len(fb.json()["bars"])]
    actions = (await client.get("/stocks/FB/corporate-actions", params={"as_of": NOW.isoformat()})).json()
    assert [(t["ticker"], t["valid_to"]) for t in actions["tickers"]] == [
        ("FB", "2022-06-09"),
        ("META", None),
    ]
    assert actions["actions"][0]["kind"] == "ticker_change"


@pytest.fixture
async def reused(conn) -> AsyncIterator[None]:
    """XYZQ: security A until 2015 (delisted 2016-01-01), security B since 2018, bars of both."""
    await upsert_universe(
        conn, [UniverseEntry(symbol="XYZQ", exchange_mic="XNAS", tier=Tier.T2, name="B Corp")]
    )
    b = await conn.fetchval("SELECT security_id FROM securities WHERE storage_symbol = 'XYZQ'")
    await conn.execute("UPDATE securities SET listed_from = '2018-01-01' WHERE security_id = $1", b)
    await conn.execute("UPDATE security_tickers SET valid_from = '2018-01-01' WHERE security_id = $1", b)
    a = await conn.fetchval(
        "INSERT INTO securities (storage_symbol, exchange_mic, name, delisted_on) "
        "VALUES ('XYZQ', 'XNAS', 'A Corp', '2016-01-01') RETURNING security_id"
    )
    await conn.execute(
        "INSERT INTO security_tickers (security_id, ticker, valid_from, valid_to) "
        "VALUES ($1, 'XYZQ', '1900-01-01', '2016-01-01')",
        a,
    )
    await _store_daily(conn, "XYZQ", datetime(2015, 12, 1, tzinfo=UTC), datetime(2016, 1, 1, tzinfo=UTC))
    await _store_daily(conn, "XYZQ", datetime(2018, 1, 2, tzinfo=UTC), datetime(2018, 2, 1, tzinfo=UTC))
    yield
    await conn.execute("DELETE FROM security_tickers WHERE ticker = 'XYZQ'")
    await conn.execute("DELETE FROM securities WHERE storage_symbol = 'XYZQ'")
    await conn.execute("DELETE FROM symbol_universe WHERE symbol = 'XYZQ'")


async def test_a_reused_ticker_never_mixes_the_two_histories(client: AsyncTestClient, reused) -> None:
    wide = {"interval": "1d", "end": "2018-02-01T00:00:00Z"}
    old = await client.get("/stocks/XYZQ/history", params={**wide, "start": "2015-12-01T00:00:00Z"})
    assert old.status_code == 200, old.text
    old_days = {b["ts"][:4] for b in old.json()["bars"]}
    assert old_days == {"2015"}
    new = await client.get("/stocks/XYZQ/history", params={**wide, "start": "2018-01-01T00:00:00Z"})
    assert {b["ts"][:4] for b in new.json()["bars"]} == {"2018"}
    multi = await client.get(
        "/stocks/bars", params={**wide, "symbols": "XYZQ", "start": "2015-12-01T00:00:00Z"}
    )
    assert {b["ts"][:4] for b in multi.json()["bars"]["XYZQ"]} == {"2015"}


async def test_a_reused_ticker_without_a_date_that_chooses_is_a_400(client: AsyncTestClient, reused) -> None:
    for params in ({"interval": "1d"}, {"interval": "1d", "start": "2017-03-01T00:00:00Z"}):
        r = await client.get("/stocks/XYZQ/history", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["parameter"] == "symbol"
        assert "XYZQ meant 2 securities" in r.json()["detail"] and "start" in r.json()["detail"]
    many = await client.get("/stocks/bars", params={"symbols": "AAPL,XYZQ", "interval": "1d"})
    assert many.status_code == 400 and many.json()["parameter"] == "symbols"
    # the price is about today: the ticker's holder today
    assert (await client.get("/stocks/XYZQ/price")).status_code in (200, 404)


async def test_a_websocket_subscription_by_the_old_ticker_follows_the_security(conn) -> None:
    await record_actions(conn, [RENAME], NOW)
    async with live_server() as server:
        ws = await connect(server)
        await send(ws, {"action": "subscribe", "bars": ["fb"], "id": 1})
        ack = await recv(ws)
        assert (ack["type"], ack["bars"]) == ("subscribed", ["META"])
        assert (await recv(ws))["type"] == "snapshot"
        await notify_bar(conn, "META", 7)
        assert (await recv(ws))["seq"] == 7
        await send(ws, {"action": "subscribe", "bars": ["NOSUCH"], "id": 2})
        refused = await recv(ws)
        assert (refused["type"], refused["code"]) == ("error", "not_found")
        await ws.close()


async def test_an_export_of_a_reused_ticker_holds_only_the_security_of_its_date(
    client: AsyncTestClient, reused
) -> None:
    import io
    import zipfile

    r = await client.get(
        "/exports/bars",
        params={
            "symbols": "XYZQ",
            "interval": "1d",
            "start": "2015-12-01T00:00:00Z",
            "end": "2018-02-01T00:00:00Z",
            "format": "csv",
        },
    )
    assert r.status_code == 200, r.text
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    rows = archive.read("bars/XYZQ.csv").decode().splitlines()[1:]
    assert rows and {row.split(",")[1][:4] for row in rows} == {"2015"}
