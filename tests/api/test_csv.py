"""GET /stocks/{symbol}/history as CSV: negotiation, pandas parsing, the same page as JSON, limits."""

from __future__ import annotations

import asyncio
import io
import socket
import threading

import msgspec
import pandas as pd
import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.stocks import csv_export
from api.stocks.params import MAX_FILE_LIMIT, MAX_LIMIT
from market_data.ingest.pit_write import write_bars
from market_data.settings import get_settings
from tests.api.stocks_data import MON_RANGE, iso, session_bars

URL = "/stocks/AAPL/history"
HEADER = "ts,open,high,low,close,volume,vwap,trade_count,provider,as_of,complete,base_bars"


@pytest.fixture
async def monday(conn) -> list:
    bars = session_bars()
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    return bars


def frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), parse_dates=["ts", "as_of"])


async def test_format_csv_streams_text_csv_that_pandas_reads(client: AsyncTestClient, monday) -> None:
    r = await client.get(URL, params={**MON_RANGE, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"  # one charset, not two
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.splitlines()[0] == HEADER
    assert r.text.splitlines()[1].startswith("2026-11-23T14:30:00Z,")
    df = frame(r.text)
    assert len(df) == 390
    assert str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].iloc[0] == pd.Timestamp("2026-11-23T14:30:00Z")
    assert df["close"].tolist() == [b.close for b in monday]
    assert df["volume"].tolist() == [b.volume for b in monday]


def json_frame(body: dict) -> pd.DataFrame:
    js = pd.DataFrame(body["bars"], columns=HEADER.split(","))
    for column in ("ts", "as_of"):
        js[column] = pd.to_datetime(js[column], utc=True)
    for column in ("vwap", "trade_count", "base_bars"):  # null in JSON, an empty cell in CSV
        js[column] = pd.to_numeric(js[column])
    return js


async def test_csv_matches_the_json_pages(client: AsyncTestClient, monday) -> None:
    body = (await client.get(URL, params={**MON_RANGE, "limit": 390})).json()
    df = frame((await client.get(URL, params={**MON_RANGE, "format": "csv"})).text)
    pd.testing.assert_frame_equal(df, json_frame(body), check_dtype=False)
    assert df["complete"].all() and df["base_bars"].isna().all()  # read as stored


async def test_accept_header_negotiates_csv(client: AsyncTestClient, monday) -> None:
    for accept, csv in [
        ("text/csv", True),
        ("text/csv, application/json;q=0.5", True),
        ("application/json", False),
        ("application/json, text/csv;q=0.5", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("*/*", False),
    ]:
        r = await client.get(URL, params=MON_RANGE, headers={"Accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv" if csv else "application/json"), accept
    for malformed in ("text/*;q=1e999", "text/", ",,,"):
        r = await client.get(URL, params=MON_RANGE, headers={"Accept": malformed})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    # an explicit format wins over the header
    r = await client.get(URL, params={**MON_RANGE, "format": "json"}, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("application/json")


async def test_csv_honours_limit_sort_and_the_page_token(client: AsyncTestClient, monday) -> None:
    r = await client.get(URL, params={**MON_RANGE, "format": "csv", "limit": 3})
    assert r.text.count("\n") == 4  # the header and 3 bars (the issue: limit=3 gave 990 rows)
    token = r.headers["x-next-page-token"]
    assert r.headers["x-as-of"].endswith("Z")
    page2 = await client.get(URL, params={**MON_RANGE, "format": "csv", "limit": 3, "page_token": token})
    assert frame(page2.text)["ts"].tolist() == [pd.Timestamp(iso(b.ts)) for b in monday[3:6]]
    desc = frame((await client.get(URL, params={**MON_RANGE, "format": "csv", "sort": "desc"})).text)
    assert desc["ts"].is_monotonic_decreasing and len(desc) == 390
    last = await client.get(URL, params={**MON_RANGE, "format": "csv", "limit": 390})
    assert "x-next-page-token" not in last.headers


async def test_csv_streams_a_page_in_chunks(client: AsyncTestClient, monday, monkeypatch) -> None:
    whole = (await client.get(URL, params={**MON_RANGE, "format": "csv"})).text
    monkeypatch.setattr(csv_export, "CHUNK_ROWS", 7)
    assert (await client.get(URL, params={**MON_RANGE, "format": "csv"})).text == whole


async def test_csv_keeps_missing_values_empty(client: AsyncTestClient, conn) -> None:
    bar = msgspec.structs.replace(session_bars(minutes=1)[0], vwap=None, trade_count=None)
    await write_bars(conn, [bar], policy_version=1, advance_cursors=True)
    text = (await client.get(URL, params={**MON_RANGE, "format": "csv"})).text
    df = frame(text)
    assert df["vwap"].isna().all() and df["trade_count"].isna().all()
    assert ",,,synthetic," in text.splitlines()[1]


async def test_csv_after_a_page_token_streams_the_rest(client: AsyncTestClient, monday) -> None:
    token = (await client.get(URL, params={**MON_RANGE, "limit": 100})).json()["next_page_token"]
    df = frame((await client.get(URL, params={**MON_RANGE, "format": "csv", "page_token": token})).text)
    assert len(df) == 290 and df["ts"].iloc[0] == pd.Timestamp("2026-11-23T16:10:00Z")


async def test_a_csv_page_may_be_larger_than_a_json_page(client: AsyncTestClient, monday) -> None:
    r = await client.get(URL, params={**MON_RANGE, "limit": MAX_LIMIT + 1})
    assert (
        r.status_code == 400
        and r.json()["parameter"] == "limit"
        and str(MAX_FILE_LIMIT) in r.json()["detail"]
    )
    r = await client.get(URL, params={**MON_RANGE, "limit": MAX_LIMIT + 1, "format": "csv"})
    assert r.status_code == 200 and len(frame(r.text)) == 390
    r = await client.get(URL, params={**MON_RANGE, "limit": MAX_FILE_LIMIT + 1, "format": "csv"})
    assert r.status_code == 400 and r.json()["parameter"] == "limit"


async def test_csv_errors_are_json(client: AsyncTestClient) -> None:
    r = await client.get("/stocks/ZZZZZ/history", params={"format": "csv"})
    assert r.status_code == 404 and r.json()["parameter"] == "symbol"
    r = await client.get(URL, params={"format": "csv", "interval": "60m"}, headers={"Accept": "text/csv"})
    assert r.status_code == 400 and r.json()["parameter"] == "interval"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_pandas_reads_the_url_directly(md_dsn: str, monday) -> None:
    """The documented use: `pd.read_csv(url, parse_dates=["ts"])` against a real server."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(get_settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        url = f"http://127.0.0.1:{port}{URL}?format=csv&start={MON_RANGE['start']}&end={MON_RANGE['end']}"
        df = await asyncio.to_thread(pd.read_csv, url, parse_dates=["ts"])
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 15)
    assert len(df) == 390
    assert pd.api.types.is_datetime64_any_dtype(df["ts"]) and str(df["ts"].dt.tz) == "UTC"
    assert df["close"].tolist() == [b.close for b in monday]
