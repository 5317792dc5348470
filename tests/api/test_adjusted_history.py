"""Adjusted bars on every bar endpoint: `adjustment=raw|split|dividend|all`, as known at `as_of`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from market_data.corporate_actions import record_actions
from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from tests.corporate_actions_data import AAPL_SPLIT as SPLIT
from tests.corporate_actions_data import NOW

URL = "/stocks/AAPL/history"
AROUND_SPLIT = {"interval": "1d", "start": "2020-08-24T00:00:00Z", "end": "2020-09-05T00:00:00Z"}


@pytest.fixture
async def split_stored(conn) -> datetime:
    """AAPL's daily bars of 2020-08-24 .. 09-04 and its 4:1 split; returns when both were known."""
    start, end = datetime(2020, 8, 24, tzinfo=UTC), datetime(2020, 9, 5, tzinfo=UTC)
    await write_bars(
        conn,
        SyntheticProvider().bars_for("AAPL", "XNAS", Interval.D1, start, end, NOW),
        policy_version=1,
        advance_cursors=False,
    )
    known = await conn.fetchval("SELECT max(as_of) FROM bars")
    await record_actions(conn, [SPLIT], known)
    return known


async def test_history_is_raw_by_default_and_split_adjusted_on_request(
    client: AsyncTestClient, split_stored
) -> None:
    raw = (await client.get(URL, params=AROUND_SPLIT)).json()
    r = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split"})
    assert r.status_code == 200, r.text
    adj = r.json()
    assert raw["adjustment"] is None
    assert adj["adjustment"]["mode"] == "split"
    (action,) = adj["adjustment"]["actions"]
    assert (action["kind"], action["ex_date"], action["split_ratio"]) == ("split", "2020-08-31", 4.0)
    for r_bar, a_bar in zip(raw["bars"], adj["bars"], strict=True):
        if r_bar["ts"] < "2020-08-31":
            assert a_bar["close"] == pytest.approx(r_bar["close"] / 4)
            assert a_bar["volume"] == r_bar["volume"] * 4
        else:
            assert a_bar == r_bar
    friday, monday = adj["bars"][4], adj["bars"][5]
    assert abs(friday["close"] / monday["open"] - 1) < 0.1  # continuous across the split


async def test_as_of_before_the_action_was_learned_reads_unadjusted(
    client: AsyncTestClient, split_stored
) -> None:
    before = (split_stored - timedelta(microseconds=1)).isoformat()
    # bars and action were learned at the same instant: an as_of before it has neither
    r = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "all", "as_of": split_stored.isoformat()})
    assert r.json()["adjustment"]["actions"][0]["learned_at"].startswith(split_stored.isoformat()[:19])
    empty = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "all", "as_of": before})
    assert empty.json()["adjustment"]["actions"] == [] and empty.json()["bars"] == []


async def test_csv_names_the_adjustment_set(client: AsyncTestClient, split_stored) -> None:
    js = (await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split"})).json()
    r = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split", "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["x-adjustment"] == "split"
    assert r.headers["x-adjustment-id"] == js["adjustment"]["id"]
    first = r.text.splitlines()[1].split(",")
    assert float(first[4]) == pytest.approx(js["bars"][0]["close"])


async def test_multi_symbol_bars_are_adjusted_per_symbol(client: AsyncTestClient, split_stored) -> None:
    single = (await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split"})).json()
    multi = await client.get(
        "/stocks/bars", params={**AROUND_SPLIT, "symbols": "AAPL,MSFT", "adjustment": "split"}
    )
    assert multi.status_code == 200, multi.text
    body = multi.json()
    assert [b["close"] for b in body["bars"]["AAPL"]] == [b["close"] for b in single["bars"]]
    assert body["adjustments"]["AAPL"]["id"] == single["adjustment"]["id"]
    assert body["adjustments"]["MSFT"]["actions"] == []
    raw = (await client.get("/stocks/bars", params={**AROUND_SPLIT, "symbols": "AAPL"})).json()
    assert raw["adjustments"] == {}


async def test_a_page_token_keeps_the_adjustment_of_the_first_page(
    client: AsyncTestClient, split_stored
) -> None:
    first = (await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split", "limit": 3})).json()
    token = first["next_page_token"]
    nxt = await client.get(
        URL, params={"interval": "1d", "adjustment": "split", "limit": 3, "page_token": token}
    )
    assert nxt.status_code == 200, nxt.text
    assert nxt.json()["adjustment"]["id"] == first["adjustment"]["id"]
    assert nxt.json()["bars"][0]["close"] < 300  # still divided by 4 (raw is about 4x)
    other = await client.get(URL, params={"interval": "1d", "limit": 3, "page_token": token})
    assert other.status_code == 400
    assert other.json()["parameter"] == "page_token"


async def test_an_unknown_adjustment_is_a_400_naming_it(client: AsyncTestClient, split_stored) -> None:
    r = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "spinoff"})
    assert r.status_code == 400
    assert "adjustment" in r.text
    assert "split" in r.text and "dividend" in r.text


async def test_an_adjusted_read_of_a_symbol_without_a_security_is_a_400(
    client: AsyncTestClient, conn
) -> None:
    await conn.execute(
        "INSERT INTO symbol_universe (symbol, exchange_mic, tier) VALUES ('NOSECX', 'XNAS', 'T2') "
        "ON CONFLICT DO NOTHING"
    )
    try:
        r = await client.get("/stocks/NOSECX/history", params={**AROUND_SPLIT, "adjustment": "split"})
        assert r.status_code == 400, r.text
        assert r.json()["parameter"] == "adjustment"
        assert "adjustment=raw" in r.json()["detail"]
        assert (await client.get("/stocks/NOSECX/history", params=AROUND_SPLIT)).status_code == 200
    finally:
        await conn.execute("DELETE FROM symbol_universe WHERE symbol = 'NOSECX'")


async def test_parquet_and_exports_carry_the_adjustment(client: AsyncTestClient, split_stored) -> None:
    import io
    import json
    import zipfile

    import pyarrow.parquet as pq

    js = (await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split"})).json()
    r = await client.get(URL, params={**AROUND_SPLIT, "adjustment": "split", "format": "parquet"})
    assert r.status_code == 200, r.text
    assert (r.headers["x-adjustment"], r.headers["x-adjustment-id"]) == ("split", js["adjustment"]["id"])
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column("close").to_pylist() == [b["close"] for b in js["bars"]]

    export = await client.get(
        "/exports/bars", params={**AROUND_SPLIT, "symbols": "AAPL", "format": "csv", "adjustment": "split"}
    )
    assert export.status_code == 200, export.text
    archive = zipfile.ZipFile(io.BytesIO(export.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["adjustment"] == "split" and manifest["request"]["adjustment"] == "split"
    (entry,) = manifest["files"]
    assert [a["split_ratio"] for a in entry["adjustment"]["actions"]] == [4.0]
    first_row = archive.read(entry["path"]).decode().splitlines()[1].split(",")
    assert float(first_row[5]) == pytest.approx(js["bars"][0]["close"])  # symbol, ts, open, high, low, close
