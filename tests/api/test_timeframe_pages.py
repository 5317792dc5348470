"""Built bars through pages, CSV and many symbols; every bad timeframe request is a 400 that says why."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import msgspec
import pandas as pd
import pytest
from litestar.testing import AsyncTestClient

from market_data import bar_reads
from market_data.ingest.pit_write import write_bars
from market_data.records import Interval
from tests.api.stocks_data import session_bars

URL = "/stocks/AAPL/history"
SESSIONS = [
    datetime(2025, 11, 26, 14, 30, tzinfo=UTC),  # 7 hourly bars
    datetime(2025, 11, 28, 14, 30, tzinfo=UTC),  # the early close: 4
    datetime(2025, 12, 1, 14, 30, tzinfo=UTC),  # 7
]
RANGE = {"start": "2025-11-24T00:00:00Z", "end": "2025-12-02T00:00:00Z"}
COLUMNS = "ts,open,high,low,close,volume,vwap,trade_count,provider,as_of,complete,base_bars".split(",")


@pytest.fixture
async def three_sessions(conn) -> None:
    for start, minutes in zip(SESSIONS, (390, 210, 390), strict=True):
        await write_bars(
            conn, session_bars(start=start, minutes=minutes), policy_version=1, advance_cursors=False
        )


async def walk(
    client: AsyncTestClient, params: dict[str, object], *, as_csv: bool = False
) -> list[list[dict]]:
    """The bars of every page of a read, following its page tokens."""
    pages: list[list[dict]] = []
    token = None
    while len(pages) < 50:
        extra = {"page_token": token} if token else {}
        r = await client.get(URL, params={**params, **extra, **({"format": "csv"} if as_csv else {})})
        assert r.status_code == 200, r.text
        if as_csv:
            pages.append(
                pd.read_csv(io.StringIO(r.text), dtype=str, keep_default_na=False).to_dict("records")
            )
            token = r.headers.get("x-next-page-token")
        else:
            pages.append(r.json()["bars"])
            token = r.json()["next_page_token"]
        if token is None:
            return pages
    raise AssertionError("more than 50 pages")


async def test_pages_of_built_bars_hold_each_bar_once(client, three_sessions) -> None:
    whole = (await client.get(URL, params={**RANGE, "interval": "1h", "limit": 100})).json()["bars"]
    assert len(whole) == 18 and [b["base_bars"] for b in whole[7:11]] == [60, 60, 60, 30]
    asc = await walk(client, {**RANGE, "interval": "1h", "limit": 5})
    assert [len(p) for p in asc] == [5, 5, 5, 3] and [b for p in asc for b in p] == whole
    desc = await walk(client, {**RANGE, "interval": "1h", "limit": 5, "sort": "desc"})
    assert [b for p in desc for b in p] == whole[::-1]
    tail = await walk(client, {"end": RANGE["end"], "interval": "1h", "limit": 5})
    assert [len(p) for p in tail] == [5, 5, 5, 3]
    assert all(p == sorted(p, key=lambda b: b["ts"]) for p in tail)
    assert [b for p in reversed(tail) for b in p] == whole
    days = await walk(client, {"end": RANGE["end"], "interval": "1d", "limit": 1})
    assert [p[0]["ts"][:10] for p in days] == ["2025-12-01", "2025-11-28", "2025-11-26"]


async def test_later_pages_of_built_bars_read_the_first_pages_versions(client, conn, three_sessions) -> None:
    first = (await client.get(URL, params={**RANGE, "interval": "1h", "limit": 5})).json()
    minute = session_bars(start=SESSIONS[2], minutes=1)[0]
    await write_bars(
        conn, [msgspec.structs.replace(minute, high=9999.0)], policy_version=1, advance_cursors=False
    )
    rest = await walk(client, {**RANGE, "interval": "1h", "limit": 5, "page_token": first["next_page_token"]})
    assert max(b["high"] for p in rest for b in p) < 9999.0
    fresh = (await client.get(URL, params={**RANGE, "interval": "1h", "limit": 100})).json()["bars"]
    assert fresh[11]["high"] == 9999.0


@pytest.mark.parametrize(
    "params",
    [
        {**RANGE, "interval": "1h", "limit": 5},
        {**RANGE, "interval": "1h", "limit": 4, "sort": "desc"},
        {"end": RANGE["end"], "interval": "30m", "limit": 7},
        {**RANGE, "interval": "1h", "align": "clock", "limit": 6},
        {**RANGE, "interval": "1d", "limit": 2},
        {**RANGE, "interval": "1w"},
        {**RANGE, "limit": 300},  # 1m, read as stored
    ],
    ids=["1h asc", "1h desc", "30m tail", "1h clock", "1d", "1w", "1m stored"],
)
async def test_csv_pages_hold_the_rows_of_the_json_pages(client, three_sessions, params) -> None:
    as_json = await walk(client, params)
    as_csv = await walk(client, params, as_csv=True)
    assert len(as_json) == len(as_csv)
    for js, cs in zip(as_json, as_csv, strict=True):
        want = pd.DataFrame(js, columns=COLUMNS)
        got = pd.DataFrame(cs, columns=COLUMNS)
        assert len(want) == len(got)
        for column in COLUMNS:
            if column in ("ts", "as_of"):
                same = pd.to_datetime(want[column], utc=True).equals(pd.to_datetime(got[column], utc=True))
            elif column == "complete":
                same = want[column].tolist() == [v == "true" for v in got[column]]
            elif column == "provider":
                same = want[column].tolist() == got[column].tolist()
            else:  # numbers: the same value, empty where JSON has null
                same = pd.to_numeric(want[column]).equals(pd.to_numeric(got[column].replace("", None)))
            assert same, (column, want[column].tolist()[:3], got[column].tolist()[:3])


async def test_many_symbols_are_each_built_from_their_own_stored_interval(
    client, conn, three_sessions
) -> None:
    v = session_bars("V", interval=Interval.M5, start=SESSIONS[0], mic="XNYS")
    await write_bars(conn, v, policy_version=1, advance_cursors=False)
    body = (await client.get("/stocks/bars", params={"symbols": "AAPL,V", "interval": "15m", **RANGE})).json()
    assert body["built_from"] == {"AAPL": "1m", "V": "5m"} and body["align"] == "session"
    assert len(body["bars"]["AAPL"]) == 26 + 14 + 26 and len(body["bars"]["V"]) == 26
    assert [b["base_bars"] for b in body["bars"]["V"][:2]] == [3, 3]
    daily = (await client.get("/stocks/bars", params={"symbols": "AAPL", "interval": "1d", **RANGE})).json()
    assert [b["base_bars"] for b in daily["bars"]["AAPL"]] == [390, 210, 390]


@pytest.mark.parametrize(
    "path,params,parameter,words",
    [
        (URL, {"interval": "60m"}, "interval", ["1m-59m", "1h-23h", "1d, 1w or 1mo"]),
        (URL, {"interval": "2d"}, "interval", ["1m-59m"]),
        (URL, {"interval": "1y"}, "interval", ["1m-59m"]),
        (URL, {"interval": "1H"}, "interval", ["1m-59m"]),
        ("/stocks/V/history", {"interval": "7m"}, "interval", ["V stores 5m", "multiples of 5m (5m-55m)"]),
        ("/stocks/V/history", {"interval": "1m"}, "interval", ["cannot build 1m"]),
        ("/stocks/MRK/history", {"interval": "1h"}, "interval", ["MRK stores 1d", "1d, 1w, 1mo"]),
        (URL, {"interval": "1h", "align": "sideways"}, "align", []),
        (
            URL,
            {"interval": "2m", "start": "2025-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"},
            "start",
            ["93 days"],
        ),
        (
            URL,
            {"interval": "1h", "start": "2019-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"},
            "start",
            ["1830"],
        ),
        ("/stocks/bars", {"symbols": "AAPL,MRK", "interval": "1h"}, "interval", ["MRK stores 1d"]),
        ("/stocks/bars", {"symbols": "AAPL", "interval": "1h", "limit": 10_001}, "limit", ["10000"]),
        ("/stocks/AAPL/intraday", {"interval": "1w"}, "interval", ["intraday"]),
        ("/stocks/MRK/intraday", {"interval": "1h"}, "interval", ["MRK stores 1d"]),
    ],
)
async def test_requests_the_service_cannot_answer_are_400_saying_what_is_allowed(
    client, conn, path, params, parameter, words
) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == parameter and body["detail"].startswith(parameter), body
    for w in words:
        assert w in body["detail"], body["detail"]


async def test_a_page_built_from_too_many_base_bars_is_a_400_naming_limit(
    client, three_sessions, monkeypatch
) -> None:
    monkeypatch.setattr(bar_reads, "MAX_BASE_BARS", 900)
    r = await client.get(URL, params={**RANGE, "interval": "1d", "limit": 3})
    assert r.status_code == 400 and r.json()["parameter"] == "limit"
    assert "900" in r.json()["detail"] and "fewer" in r.json()["detail"]
    r = await client.get(URL, params={**RANGE, "interval": "1d", "limit": 1})
    assert r.status_code == 200 and r.json()["count"] == 1


async def test_a_range_read_in_parallel_parts_gives_the_same_bars(client, three_sessions, monkeypatch):
    whole = (await client.get(URL, params={**RANGE, "interval": "1h", "limit": 100})).json()["bars"]
    monkeypatch.setattr(bar_reads, "ROWS_PER_FETCH_PART", 100)  # 990 base bars: four parts
    assert (await client.get(URL, params={**RANGE, "interval": "1h", "limit": 100})).json()["bars"] == whole
