"""GET /stocks/{symbol}/history: keyset pages, sort orders, pinned as_of, token and range errors."""

from __future__ import annotations

import base64

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from market_data.ingest.pit_write import write_bars
from tests.api.stocks_data import MON_RANGE, iso, session_bars

URL = "/stocks/AAPL/history"


async def walk(client: AsyncTestClient, params: dict[str, object]) -> list[dict]:
    """Every page of a read, following next_page_token with the same parameters."""
    pages: list[dict] = []
    token = None
    while True:
        r = await client.get(URL, params={**params, **({"page_token": token} if token else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        token = body["next_page_token"]
        if token is None:
            return pages
        assert len(pages) < 100


@pytest.fixture
async def monday(conn) -> list:
    bars = session_bars()
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    return bars


async def test_pages_ascending_return_each_bar_once_in_order(client: AsyncTestClient, monday) -> None:
    pages = await walk(client, {**MON_RANGE, "limit": 50})
    assert [p["count"] for p in pages] == [50] * 7 + [40]
    ts = [b["ts"] for p in pages for b in p["bars"]]
    assert ts == [iso(b.ts) for b in monday]
    assert [b["close"] for p in pages for b in p["bars"]] == [b.close for b in monday]
    assert {p["as_of"] for p in pages} == {pages[0]["as_of"]}
    assert all(p["sort"] == "asc" for p in pages)


async def test_pages_descending_return_each_bar_once_newest_first(client: AsyncTestClient, monday) -> None:
    pages = await walk(client, {**MON_RANGE, "limit": 100, "sort": "desc"})
    assert [p["count"] for p in pages] == [100, 100, 100, 90]
    ts = [b["ts"] for p in pages for b in p["bars"]]
    assert ts == [iso(b.ts) for b in reversed(monday)]


async def test_without_start_pages_walk_back_each_oldest_first(client: AsyncTestClient, monday) -> None:
    pages = await walk(client, {"end": MON_RANGE["end"], "limit": 100})
    assert [p["bars"][0]["ts"][11:16] for p in pages] == ["19:20", "17:40", "16:00", "14:30"]
    for p in pages:
        assert [b["ts"] for b in p["bars"]] == sorted(b["ts"] for b in p["bars"])
    assert sorted(b["ts"] for p in pages for b in p["bars"]) == [iso(b.ts) for b in monday]


async def test_an_exact_last_page_has_no_token(client: AsyncTestClient, monday) -> None:
    body = (await client.get(URL, params={**MON_RANGE, "limit": 390})).json()
    assert body["count"] == 390 and body["next_page_token"] is None
    body = (await client.get(URL, params={**MON_RANGE, "limit": 389})).json()
    assert body["count"] == 389 and body["next_page_token"] is not None


async def test_a_version_written_between_pages_does_not_change_later_pages(
    client: AsyncTestClient, conn, monday
) -> None:
    first = (await client.get(URL, params={**MON_RANGE, "limit": 100})).json()
    changed = msgspec.structs.replace(monday[250], close=999.0)
    await write_bars(conn, [changed], policy_version=1, advance_cursors=True)
    later = await walk(client, {**MON_RANGE, "limit": 100, "page_token": first["next_page_token"]})
    closes = [b["close"] for p in [first, *later] for b in p["bars"]]
    assert closes == [b.close for b in monday]
    assert {p["as_of"] for p in later} == {first["as_of"]}
    # a new read sees the new version
    fresh = (await client.get(URL, params={**MON_RANGE, "limit": 390})).json()
    assert fresh["bars"][250]["close"] == 999.0


async def test_pages_of_an_as_of_read_keep_that_as_of(client: AsyncTestClient, conn, monday) -> None:
    known = await conn.fetchval("SELECT max(as_of) FROM bars")
    await write_bars(
        conn, [msgspec.structs.replace(monday[300], close=1.0)], policy_version=1, advance_cursors=True
    )
    pages = await walk(client, {**MON_RANGE, "limit": 200, "as_of": known.isoformat()})
    assert [b["close"] for p in pages for b in p["bars"]][300] == monday[300].close
    # the token holds as_of: later pages may leave it out, but not change it
    token = pages[0]["next_page_token"]
    r = await client.get(URL, params={**MON_RANGE, "limit": 200, "page_token": token})
    assert r.status_code == 200 and r.json()["bars"][100]["close"] == monday[300].close


def _flip(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-3] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_bad_page_tokens_are_400_naming_page_token(client: AsyncTestClient, monday) -> None:
    token = (await client.get(URL, params={**MON_RANGE, "limit": 10})).json()["next_page_token"]
    cases = [
        ("garbage", {}),
        ("!!!not-base64!!!", {}),
        ("AAAA", {}),
        (token[:-6], {}),
        (_flip(token), {}),
        (token, {"interval": "5m"}),
        (token, {"sort": "desc"}),
        (token, {"start": "2026-11-23T15:00:00Z"}),
        (token, {"as_of": "2026-11-01T00:00:00Z"}),
    ]
    for bad, extra in cases:
        r = await client.get(URL, params={**MON_RANGE, "limit": 10, **extra, "page_token": bad})
        assert r.status_code == 400, (bad, extra, r.text)
        body = r.json()
        assert body["parameter"] == "page_token" and body["detail"].startswith("page_token"), body
    r = await client.get("/stocks/MSFT/history", params={**MON_RANGE, "page_token": token})
    assert r.status_code == 400 and r.json()["parameter"] == "page_token"
    assert "symbol" in r.json()["detail"]


async def test_naive_timestamps_are_utc(client: AsyncTestClient, monday) -> None:
    aware = (
        await client.get(URL, params={"start": "2026-11-23T15:00:00Z", "end": "2026-11-23T15:05:00Z"})
    ).json()
    naive = (
        await client.get(URL, params={"start": "2026-11-23T15:00:00", "end": "2026-11-23T15:05:00"})
    ).json()
    offset = (
        await client.get(
            URL, params={"start": "2026-11-23T10:00:00-05:00", "end": "2026-11-23T10:05:00-05:00"}
        )
    ).json()
    assert aware["bars"] == naive["bars"] == offset["bars"]
    assert aware["count"] == 5


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"sort": "up"}, "sort"),
        ({"format": "xml"}, "format"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-11-23T00:00:00Z"}, "start"),  # > 93 days of 1m
        ({"start": "1899-12-31T00:00:00Z", "end": "1900-01-02T00:00:00Z"}, "start"),
        ({"end": "2300-01-01T00:00:00Z"}, "end"),
        ({"as_of": "0001-01-01T00:00:00Z"}, "as_of"),
        ({"start": "2026-11-23T15:00:00Z", "end": "2026-11-23T15:00:00Z"}, "end"),
        ({"limit": "ten"}, "limit"),
        ({"page_token": "x" * 2000}, "page_token"),
    ],
)
async def test_bad_ranges_and_options_are_400(client: AsyncTestClient, params, parameter) -> None:
    r = await client.get(URL, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter and r.json()["detail"].startswith(parameter)


async def test_wide_ranges_are_allowed_up_to_the_interval_span(client: AsyncTestClient, monday) -> None:
    r = await client.get(
        URL, params={"interval": "1d", "start": "1990-01-01T00:00:00Z", "end": "2026-11-24T00:00:00Z"}
    )
    # AAPL stores 1m bars only: its one stored session is one daily bar, built from all 390
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["built_from"] == "1m"
    assert r.json()["bars"][0]["base_bars"] == 390 and r.json()["bars"][0]["complete"] is True
    r = await client.get(
        URL, params={"start": "2026-08-23T00:00:00Z", "end": "2026-11-24T00:00:00Z", "limit": 7}
    )
    assert r.status_code == 200
    assert [b["ts"] for b in r.json()["bars"]] == [iso(b.ts) for b in monday[:7]]
