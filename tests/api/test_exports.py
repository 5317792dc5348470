"""GET /exports/bars: a streamed zip of a file per symbol and a manifest that reproduces it exactly."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pandas as pd
import pyarrow.parquet as pq
import pytest

from api.exports import bars as export_bars
from api.exports import plan as export_plan
from api.stocks.parquet_export import bar_schema
from market_data import bar_fetch, db
from market_data.ingest.pit_write import write_bars
from market_data.records import Interval
from tests.api.stocks_data import session_bars

URL = "/exports/bars"
SESSIONS = [datetime(2025, 11, 26, 14, 30, tzinfo=UTC), datetime(2025, 11, 28, 14, 30, tzinfo=UTC)]
RANGE = {"start": "2025-11-24T00:00:00Z", "end": "2025-12-02T00:00:00Z"}
BTC_DAY = datetime(2025, 11, 27, tzinfo=UTC)


@pytest.fixture
async def stored(conn) -> None:
    """AAPL 1m bars of two sessions (one an early close), V 5m bars, BTC-USD 1m bars of one UTC day."""
    for start, minutes in zip(SESSIONS, (390, 210), strict=True):
        await write_bars(
            conn, session_bars(start=start, minutes=minutes), policy_version=1, advance_cursors=False
        )
    v = session_bars("V", interval=Interval.M5, start=SESSIONS[0], mic="XNYS")
    btc = session_bars("BTC-USD", start=BTC_DAY, minutes=1440, mic="C247")
    await write_bars(conn, v + btc, policy_version=1, advance_cursors=False)


def unzip(r) -> tuple[dict, dict[str, bytes]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = z.namelist()
        assert names[-1] == "manifest.json"
        files = {n: z.read(n) for n in names[:-1]}
        return json.loads(z.read("manifest.json")), files


async def test_an_export_holds_a_file_per_symbol_and_a_manifest_of_them(client, conn, stored) -> None:
    r = await client.get(URL, params={"symbols": "aapl,V,BTC-USD", "interval": "1h", **RANGE})
    manifest, files = unzip(r)
    assert list(files) == ["bars/AAPL.parquet", "bars/V.parquet", "bars/BTC-USD.parquet"]
    assert manifest["format_version"] == 1 and manifest["format"] == "parquet"
    assert manifest["as_of"].replace("+00:00", "Z") == r.headers["x-as-of"].replace("+00:00", "Z")
    # the version active now (earlier tests of the session may have reloaded the policy)
    active = await conn.fetchval("SELECT version FROM policy_versions WHERE active")
    assert manifest["policy_version"] == active and manifest["interval"] == "1h"
    assert manifest["symbols"] == ["AAPL", "V", "BTC-USD"]
    assert manifest["request"]["as_of"] == r.headers["x-as-of"]
    by_symbol = {f["symbol"]: f for f in manifest["files"]}
    assert {s: f["rows"] for s, f in by_symbol.items()} == {"AAPL": 7 + 4, "V": 7, "BTC-USD": 24}
    assert {s: f["built_from"] for s, f in by_symbol.items()} == {"AAPL": "1m", "V": "5m", "BTC-USD": "1m"}
    assert manifest["rows"] == 11 + 7 + 24
    for f in manifest["files"]:
        data = files[f["path"]]
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
        table = pq.read_table(io.BytesIO(data))
        assert table.schema == bar_schema(with_symbol=True) and table.num_rows == f["rows"]
        assert set(table.column("symbol").to_pylist()) == {f["symbol"]}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_each_file_holds_the_rows_history_serves(client, stored, fmt) -> None:
    params = {"interval": "15m", **RANGE}
    r = await client.get(URL, params={"symbols": "AAPL,V", "format": fmt, **params})
    manifest, files = unzip(r)
    as_of = manifest["as_of"]
    for symbol in ("AAPL", "V"):
        history = (
            await client.get(f"/stocks/{symbol}/history", params={**params, "as_of": as_of, "limit": 1000})
        ).json()
        data = io.BytesIO(files[f"bars/{symbol}.{fmt}"])
        got = pd.read_parquet(data) if fmt == "parquet" else pd.read_csv(data, parse_dates=["ts", "as_of"])
        assert got["symbol"].eq(symbol).all()
        assert got["ts"].tolist() == [pd.Timestamp(b["ts"]) for b in history["bars"]]
        assert got["close"].tolist() == [b["close"] for b in history["bars"]]
        assert got["base_bars"].tolist() == [b["base_bars"] for b in history["bars"]]
        assert got["complete"].tolist() == [b["complete"] for b in history["bars"]]


async def test_rerunning_the_manifest_request_gives_identical_files_after_new_bars_and_revisions(
    client, conn, stored
) -> None:
    first = await client.get(URL, params={"symbols": "AAPL,BTC-USD", "interval": "1h", **RANGE})
    manifest, _ = unzip(first)
    # after as_of: a revision of a bar in the range, a bar the range lacked, bars after it
    revised = msgspec.structs.replace(session_bars(start=SESSIONS[0], minutes=1)[0], high=9999.0)
    late = session_bars(start=SESSIONS[1] + timedelta(minutes=210), minutes=1)  # nothing but it is new
    btc_next = session_bars("BTC-USD", start=BTC_DAY + timedelta(days=1), minutes=60, mic="C247")
    await write_bars(conn, [revised, *late, *btc_next], policy_version=1, advance_cursors=False)

    again = await client.get(manifest["url"])
    manifest2, _ = unzip(again)
    assert manifest2 == manifest
    assert again.content == first.content  # the zip itself, byte for byte
    now = await client.get(URL, params={"symbols": "AAPL,BTC-USD", "interval": "1h", **RANGE})
    fresh, _ = unzip(now)
    # the same request without as_of sees the new versions: the checksums can tell
    assert [f["sha256"] for f in fresh["files"]] != [f["sha256"] for f in manifest["files"]]
    assert fresh["files"][1]["rows"] == manifest["files"][1]["rows"] + 1


async def test_as_of_defaults_to_before_every_write_still_in_flight(client, md_dsn, stored) -> None:
    writer = await db.connect(md_dsn)
    try:
        async with writer.transaction():
            started = await writer.fetchval("SELECT clock_timestamp()")
            r = await client.get(URL, params={"symbols": "BTC-USD", **RANGE})
            manifest, _ = unzip(r)
            assert datetime.fromisoformat(manifest["as_of"]) < started
            # this transaction's version gets an as_of after `started`, and commits after the export
            bar = session_bars("BTC-USD", start=BTC_DAY + timedelta(hours=5), minutes=1, mic="C247")[0]
            await write_bars(
                writer, [msgspec.structs.replace(bar, close=1.0)], policy_version=1, advance_cursors=False
            )
    finally:
        await writer.close()
    again, _ = unzip(await client.get(manifest["url"]))
    assert again == manifest
    r = await client.get(URL, params={**manifest["request"], "as_of": started.isoformat()})
    assert r.status_code == 200  # settled by now


async def test_a_later_as_of_than_what_is_settled_is_a_400(client, stored) -> None:
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    r = await client.get(URL, params={"symbols": "AAPL", **RANGE, "as_of": future})
    assert r.status_code == 400 and r.json()["parameter"] == "as_of"


async def test_small_pages_stream_the_same_csv(client, stored, monkeypatch) -> None:
    params = {"symbols": "AAPL,BTC-USD", "format": "csv", **RANGE}
    manifest, files = unzip(await client.get(URL, params=params))
    monkeypatch.setattr(export_plan, "PAGE_ROWS", 7)
    paged_manifest, paged = unzip(await client.get(manifest["url"]))
    assert paged == files and paged_manifest == manifest
    assert manifest["files"][0]["rows"] == 600 and files["bars/AAPL.csv"].count(b"\n") == 601


async def test_a_symbol_without_bars_gets_a_file_with_its_header(client, stored) -> None:
    manifest, files = unzip(await client.get(URL, params={"symbols": "MSFT", "format": "csv", **RANGE}))
    assert manifest["files"][0]["rows"] == 0
    assert files["bars/MSFT.csv"].decode().startswith("symbol,ts,open,")
    manifest, files = unzip(await client.get(URL, params={"symbols": "MSFT", **RANGE}))
    assert pq.read_table(io.BytesIO(files["bars/MSFT.parquet"])).num_rows == 0


@pytest.mark.parametrize(
    "params,parameter",
    [
        ({"symbols": "AAPL", "end": RANGE["end"]}, "start"),
        ({"symbols": "AAPL", **RANGE, "interval": "60m"}, "interval"),
        ({"symbols": "AAPL,V", **RANGE, "interval": "1m"}, "interval"),  # V stores 5m
        ({"symbols": "AAPL", **RANGE, "format": "json"}, "format"),
        ({"symbols": "AAPL", **RANGE, "format": "xlsx"}, "format"),
        ({"symbols": "AAPL", "start": "2025-01-01T00:00:00Z", "end": "2025-12-01T00:00:00Z"}, "start"),
        ({"symbols": "AAPL", **RANGE, "as_of": "1700000000"}, "as_of"),
        ({"symbols": "", **RANGE}, "symbols"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(client, stored, params, parameter) -> None:
    r = await client.get(URL, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter, r.json()


async def test_the_row_cap_is_a_400_before_anything_streams(client, stored, monkeypatch) -> None:
    monkeypatch.setattr(export_plan, "MAX_EXPORT_ROWS", 1000)
    r = await client.get(URL, params={"symbols": "AAPL,MSFT", **RANGE})
    assert r.status_code == 400 and r.json()["parameter"] == "start"
    assert "1000" in r.json()["detail"] and "about 3540 bars" in r.json()["detail"]  # 4 x 390 + 210, twice
    r = await client.get(URL, params={"symbols": "ZZZZ", **RANGE})
    assert r.status_code == 404 and "ZZZZ" in r.json()["detail"]


async def test_openapi_documents_the_zip(client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    op = doc["paths"]["/exports/bars"]["get"]
    assert set(op["responses"]["200"]["content"]) == {export_bars.ZIP_MEDIA_TYPE}
    assert {"400", "404", "503"} <= set(op["responses"])


async def test_a_role_that_cannot_see_other_sessions_assumes_they_are_a_minute_old(md_dsn, conn) -> None:
    role = f"md_probe_{uuid.uuid4().hex[:8]}"
    await conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        probe = await asyncpg.connect(md_dsn, user=role)
        try:
            async with conn.transaction():  # another role's open transaction, opaque to the probe
                await conn.execute("SELECT 1")
                now = await probe.fetchval("SELECT clock_timestamp()")
                settled = await bar_fetch.settled_as_of(probe)
                after = await probe.fetchval("SELECT clock_timestamp()")
            margin = timedelta(seconds=bar_fetch.SETTLE_MARGIN_SECONDS)
            assert now - margin - timedelta(seconds=1) < settled <= after - margin
            assert await bar_fetch.settled_as_of(conn) > now - timedelta(seconds=5)  # superuser sees in
        finally:
            await probe.close()
    finally:
        await conn.execute(f'DROP ROLE "{role}"')
