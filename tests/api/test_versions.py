"""GET /stocks/{symbol}/versions: every stored version of one bar, oldest first."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from market_data.ingest.pit_write import write_bars
from market_data.records import Interval
from tests.api.stocks_data import session_bars

URL = "/stocks/AAPL/versions"


async def test_every_version_oldest_first(client: AsyncTestClient, conn) -> None:
    bars = session_bars(minutes=3)
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)  # identical: no new version
    await write_bars(
        conn, [msgspec.structs.replace(bars[1], close=50.0)], policy_version=2, advance_cursors=True
    )
    fix = msgspec.structs.replace(bars[1], close=51.0, provider="other", vwap=None)
    await write_bars(conn, [fix], policy_version=3, advance_cursors=True)
    r = await client.get(URL, params={"ts": "2026-11-23T14:31:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["symbol"], body["interval"], body["ts"], body["count"]) == (
        "AAPL",
        "1m",
        "2026-11-23T14:31:00Z",
        3,
    )
    v = body["versions"]
    assert [x["close"] for x in v] == [bars[1].close, 50.0, 51.0]
    assert [x["provider"] for x in v] == ["synthetic", "synthetic", "other"]
    assert [x["policy_version"] for x in v] == [1, 2, 3]
    assert v[0]["as_of"] < v[1]["as_of"] < v[2]["as_of"]
    assert v[2]["vwap"] is None and v[0]["status"] == "final"
    # the last version is the current bar
    hist = (
        await client.get("/stocks/AAPL/history", params={"start": "2026-11-23T14:31:00Z", "limit": 1})
    ).json()
    assert hist["bars"][0]["close"] == 51.0 and hist["bars"][0]["as_of"] == v[2]["as_of"]
    # a bar with one version; a naive ts is UTC
    one = (await client.get(URL, params={"ts": "2026-11-23T14:30:00"})).json()
    assert one["count"] == 1 and one["versions"][0]["close"] == bars[0].close


async def test_interval_selects_the_series(client: AsyncTestClient, conn) -> None:
    await write_bars(
        conn, session_bars(interval=Interval.M5, minutes=10), policy_version=1, advance_cursors=True
    )
    params = {"ts": "2026-11-23T14:35:00Z"}
    assert (await client.get(URL, params=params)).status_code == 404
    r = await client.get(URL, params={**params, "interval": "5m"})
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["interval"] == "5m"


@pytest.mark.parametrize(
    "path,params,status,parameter",
    [
        (URL, {"ts": "2026-11-23T14:31:00Z"}, 404, "ts"),
        (URL, {}, 400, "ts"),
        (URL, {"ts": "noon"}, 400, "ts"),
        (URL, {"ts": "2026-11-23T14:31:00Z", "interval": "7m"}, 400, "interval"),
        (URL, {"ts": "3000-01-01T00:00:00Z"}, 400, "ts"),
        ("/stocks/ZZZZZ/versions", {"ts": "2026-11-23T14:31:00Z"}, 404, "symbol"),
        ("/stocks/-AAPL/versions", {"ts": "2026-11-23T14:31:00Z"}, 400, "symbol"),
    ],
)
async def test_version_errors(client: AsyncTestClient, conn, path, params, status, parameter) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["parameter"] == parameter and r.json()["detail"].startswith(parameter)
