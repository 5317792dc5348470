"""market_data.client against a live test app (uvicorn on a free port, the run's database)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from market_data import bar_reads
from market_data import client as md_client
from market_data.client import BadRequest, MarketDataClient, NotFound, Unavailable, read_export
from market_data.ingest.pit_write import write_bars
from market_data.records import Interval
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import live_server, notify_bar, wait_until

SESSIONS = [datetime(2025, 11, 26, 14, 30, tzinfo=UTC), datetime(2025, 11, 28, 14, 30, tzinfo=UTC)]
START, END = "2025-11-24T00:00:00Z", "2025-12-02T00:00:00Z"
BAR_DTYPES = {
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "vwap": "float64",
    "trade_count": "Int64",
    "as_of": "datetime64[us, UTC]",
    "complete": "bool",
    "base_bars": "Int64",
}


@pytest.fixture
async def stored(conn) -> None:
    for start, minutes in zip(SESSIONS, (390, 210), strict=True):
        await write_bars(
            conn, session_bars(start=start, minutes=minutes), policy_version=1, advance_cursors=False
        )
    v = session_bars("V", interval=Interval.M5, start=SESSIONS[0], mic="XNYS")
    await write_bars(conn, v, policy_version=1, advance_cursors=False)


@contextlib.asynccontextmanager
async def api(**kwargs: Any):
    async with live_server() as server:
        md = MarketDataClient(server.http(""), **kwargs)
        try:
            yield server, md
        finally:
            md.close()


def assert_bar_frame(df: pd.DataFrame) -> None:
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC" and df.index.name == "ts"
    for column, dtype in BAR_DTYPES.items():
        assert str(df[column].dtype) == dtype, column


async def test_history_follows_the_page_tokens_into_one_typed_frame(stored, monkeypatch) -> None:
    async with api() as (server, md):
        whole = await asyncio.to_thread(md.history, "AAPL", "1m", START, END)
        monkeypatch.setattr(md_client, "FILE_PAGE_ROWS", 70)  # nine pages
        paged = await asyncio.to_thread(md.history, "AAPL", "1m", START, END)
        hourly = await asyncio.to_thread(md.history, "AAPL", "1h", START, END)
        tail = await asyncio.to_thread(md.history, "AAPL", "1h", None, END, limit=5)
        async with httpx.AsyncClient() as http:
            body = (await http.get(server.http("/stocks/AAPL/history"), params={
                "interval": "1h", "start": START, "end": END})).json()  # fmt: skip
    assert len(whole) == 600 and whole.index.is_monotonic_increasing
    assert_bar_frame(whole)
    pd.testing.assert_frame_equal(paged, whole)
    assert_bar_frame(hourly)
    assert hourly.index.tolist() == [pd.Timestamp(b["ts"]) for b in body["bars"]]
    assert hourly["base_bars"].tolist() == [b["base_bars"] for b in body["bars"]]
    assert hourly["close"].tolist() == [b["close"] for b in body["bars"]]
    pd.testing.assert_frame_equal(tail, hourly.iloc[-5:])


async def test_bars_continues_truncated_symbols_at_the_same_as_of(stored, monkeypatch) -> None:
    monkeypatch.setattr(md_client, "JSON_PAGE_ROWS", 50)
    async with api() as (_, md):
        df = await asyncio.to_thread(md.bars, ["AAPL", "V"], "15m", START, END)
        aapl = await asyncio.to_thread(md.history, "AAPL", "15m", START, END)
    assert df.index.names == ["symbol", "ts"]
    assert df.loc["AAPL"].shape[0] == 26 + 14 and df.loc["V"].shape[0] == 26
    assert_bar_frame(df.loc["AAPL"])
    pd.testing.assert_frame_equal(df.loc["AAPL"], aapl)


async def test_snapshots_and_coverage_are_frames(stored) -> None:
    async with api() as (_, md):
        snaps = await asyncio.to_thread(md.snapshots, ["AAPL", "MSFT"])
        cov = await asyncio.to_thread(md.coverage, "AAPL", "1m", START, END)
    assert snaps.index.tolist() == ["AAPL", "MSFT"]
    assert snaps.loc["AAPL", "minute_bar.ts"] == pd.Timestamp("2025-11-28T17:59:00Z")
    assert pd.isna(snaps.loc["MSFT", "minute_bar.ts"]) if "minute_bar.ts" in snaps else True
    assert isinstance(cov.index, pd.DatetimeIndex) and str(cov.index.tz) == "UTC"
    assert cov["expected"].tolist() == [390, 390, 390, 210, 390]
    assert cov["stored"].tolist() == [0, 0, 390, 210, 0] and str(cov["missing"].dtype) == "int64"
    assert cov.attrs["counted"] == "1m"


async def test_a_400_is_raised_with_the_apis_message(stored) -> None:
    async with api() as (_, md):
        with pytest.raises(BadRequest) as bad:
            await asyncio.to_thread(md.history, "AAPL", "60m", START, END)
        with pytest.raises(NotFound) as unknown:
            await asyncio.to_thread(md.bars, ["AAPL", "ZZZZ"], "1m", START, END)
    assert bad.value.status_code == 400 and bad.value.parameter == "interval"
    assert str(bad.value).startswith("400: interval: ") and "1m-59m" in bad.value.detail
    assert "ZZZZ" in unknown.value.detail


class FailingFirst(httpx.BaseTransport):
    """Answers the first `failures` requests with 503 + Retry-After, then passes them to the server."""

    def __init__(self, failures: int, retry_after: str = "2") -> None:
        self.failures = failures
        self.retry_after = retry_after
        self.requests = 0
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.failures:
            body = {"status_code": 503, "detail": "database: unavailable"}
            return httpx.Response(503, json=body, headers={"Retry-After": self.retry_after})
        return self._real.handle_request(request)


async def test_a_503_is_retried_after_its_retry_after_and_raised_when_it_persists(stored) -> None:
    waits: list[float] = []
    transport = FailingFirst(2)
    async with api(transport=transport, sleep=waits.append) as (_, md):
        df = await asyncio.to_thread(md.history, "AAPL", "1d", START, END)
    assert len(df) == 2 and transport.requests == 3 and waits == [2.0, 2.0]

    waits.clear()
    transport = FailingFirst(10, retry_after="600")
    async with api(transport=transport, sleep=waits.append, max_retries=3, max_retry_wait=5) as (_, md):
        with pytest.raises(Unavailable) as down:
            await asyncio.to_thread(md.history, "AAPL", "1d", START, END)
    assert transport.requests == 4 and waits == [5.0, 5.0, 5.0]  # bounded: attempts and each wait
    assert down.value.status_code == 503 and "database" in down.value.detail


async def test_export_bars_downloads_verifies_and_reads_back(stored, tmp_path) -> None:
    async with api() as (_, md):
        manifest = await asyncio.to_thread(
            md.export_bars, ["AAPL", "V"], START, END, path=tmp_path / "x.zip", interval="1h"
        )
        hourly = await asyncio.to_thread(md.history, "AAPL", "1h", START, END, as_of=manifest["as_of"])
    assert [f["rows"] for f in manifest["files"]] == [11, 7]
    df = read_export(tmp_path / "x.zip")
    pd.testing.assert_frame_equal(df.loc["AAPL"], hourly)
    with zipfile.ZipFile(tmp_path / "x.zip") as z, zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for name in z.namelist()[:-1]:
            bad.writestr(name, z.read(name))
        manifest["files"][1]["sha256"] = "0" * 64  # V's file is not what the manifest says
        bad.writestr("manifest.json", json.dumps(manifest))
    with pytest.raises(ValueError, match=r"bars/V\.parquet"):
        md_client.verify_export(tmp_path / "bad.zip")


async def test_live_subscribes_yields_and_resubscribes_after_a_reconnect(stored, conn) -> None:
    got: list[dict] = []
    async with live_server() as server:
        port = server.port
        md = MarketDataClient(server.http(""))

        async def consume() -> None:
            async for message in md.live(bars=["AAPL"], intervals=["1m", "1h"], max_backoff=0.2):
                got.append(message)

        task = asyncio.create_task(consume())
        await wait_until(lambda: any(m["type"] == "snapshot" for m in got), 10, "snapshot")
        snapshot = next(m for m in got if m["type"] == "snapshot")
        assert {(b["symbol"], b["interval"]) for b in snapshot["bars"]} == {("AAPL", "1m"), ("AAPL", "1h")}
        await notify_bar(conn, "AAPL", 1)
        await wait_until(lambda: any(m["type"] == "bar" for m in got), 10, "live bar")
    # the server is gone (close 1001); a new one on the same port takes the client back
    try:
        async with live_server(port=port):
            await wait_until(lambda: any(m["type"] == "reconnected" for m in got), 20, "reconnect")
            await wait_until(lambda: [m["type"] for m in got].count("snapshot") == 2, 10, "second snapshot")
            await notify_bar(conn, "AAPL", 2)
            await wait_until(lambda: [m["type"] for m in got].count("bar") == 2, 10, "bar after reconnect")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    kinds = [m["type"] for m in got if m["type"] != "heartbeat"]
    assert kinds == ["subscribed", "snapshot", "bar", "reconnected", "subscribed", "snapshot", "bar"]
    assert got[-1]["seq"] == 2


async def test_live_raises_the_servers_refusal_of_the_subscription(stored) -> None:
    async with api() as (_, md):
        with pytest.raises(BadRequest) as refused:
            async for _ in md.live(bars=["AAPL"], intervals=["60m"]):
                pass
    assert refused.value.parameter.startswith("intervals")


def test_instants_are_sent_as_utc_iso() -> None:
    assert md_client._iso("2025-11-24") == "2025-11-24T00:00:00Z"
    assert (
        md_client._iso(datetime(2025, 11, 24, 9, 30, tzinfo=UTC) + timedelta(hours=1))
        == "2025-11-24T10:30:00Z"
    )
    assert md_client._iso(pd.Timestamp("2025-11-24T09:30:00-05:00")) == "2025-11-24T14:30:00Z"


async def test_history_asks_for_smaller_pages_when_a_page_is_built_from_too_many_base_bars(
    stored, monkeypatch
) -> None:
    async with api() as (_, md):
        whole = await asyncio.to_thread(md.history, "AAPL", "1h", START, END)
        monkeypatch.setattr(bar_reads, "MAX_BASE_BARS", 300)  # 11 hourly bars of 600 1m bars do not fit
        paged = await asyncio.to_thread(md.history, "AAPL", "1h", START, END)
        monkeypatch.setattr(bar_reads, "MAX_BASE_BARS", 50)  # not even one hour
        with pytest.raises(BadRequest) as refused:
            await asyncio.to_thread(md.history, "AAPL", "1h", START, END)
    assert len(whole) == 11 and whole["base_bars"].sum() == 600
    pd.testing.assert_frame_equal(paged, whole)
    assert refused.value.parameter == "limit"
