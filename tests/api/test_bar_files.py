"""/history as JSON, CSV and Parquet: the same rows for the same parameters, typed Parquet columns."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import msgspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
from litestar.testing import AsyncTestClient

from api.stocks import csv_export
from api.stocks.parquet_export import PARQUET_MEDIA_TYPE, bar_schema
from market_data.ingest.pit_write import write_bars
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from tests.api.stocks_data import session_bars

URL = "/stocks/AAPL/history"
SESSIONS = [
    datetime(2025, 11, 26, 14, 30, tzinfo=UTC),
    datetime(2025, 11, 28, 14, 30, tzinfo=UTC),  # the early close
    datetime(2025, 12, 1, 14, 30, tzinfo=UTC),
]
RANGE = {"start": "2025-11-24T00:00:00Z", "end": "2025-12-02T00:00:00Z"}
COLUMNS = list(csv_export.CSV_COLUMNS)
FORMATS = ("json", "csv", "parquet")
REVISED_HIGH = 9999.0


class Revised(msgspec.Struct):
    before: str
    """An instant after the first versions were stored and before the revision."""


@pytest.fixture
async def revised_sessions(conn) -> Revised:
    """Three sessions of AAPL 1m bars, then a second version of the last session's first bar."""
    for start, minutes in zip(SESSIONS, (390, 210, 390), strict=True):
        await write_bars(
            conn, session_bars(start=start, minutes=minutes), policy_version=1, advance_cursors=False
        )
    before = await conn.fetchval("SELECT clock_timestamp()")
    minute = session_bars(start=SESSIONS[2], minutes=1)[0]
    await write_bars(
        conn, [msgspec.structs.replace(minute, high=REVISED_HIGH)], policy_version=1, advance_cursors=False
    )
    return Revised(before=before.isoformat())


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """One dtype per column, whatever the encoding: what 'the same rows' is compared on."""
    out = pd.DataFrame(index=range(len(df)))
    for column in COLUMNS:
        values = df[column].reset_index(drop=True)
        if column in ("ts", "as_of"):
            out[column] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        elif column in ("trade_count", "base_bars"):
            out[column] = pd.to_numeric(values).astype("Int64")
        elif column == "complete":
            out[column] = values.astype(bool)
        elif column == "provider":
            out[column] = values.astype(str)
        else:
            out[column] = pd.to_numeric(values).astype("float64")
    return out


def _page(fmt: str, r) -> tuple[pd.DataFrame, str | None]:
    if fmt == "json":
        body = r.json()
        return pd.DataFrame(body["bars"], columns=COLUMNS), body["next_page_token"]
    token = r.headers.get("x-next-page-token")
    if fmt == "csv":
        return pd.read_csv(io.StringIO(r.text)), token
    assert r.headers["content-type"] == PARQUET_MEDIA_TYPE
    assert pq.read_schema(io.BytesIO(r.content)) == bar_schema()  # typed, whatever the rows
    return pd.read_parquet(io.BytesIO(r.content)), token


async def walk(client: AsyncTestClient, params: dict[str, object], fmt: str) -> list[pd.DataFrame]:
    """Every page of a read in one format, following its page tokens."""
    pages: list[pd.DataFrame] = []
    token = None
    while len(pages) < 60:
        extra = {"page_token": token} if token else {}
        r = await client.get(URL, params={**params, **extra, "format": fmt})
        assert r.status_code == 200, r.text
        df, token = _page(fmt, r)
        pages.append(_canonical(df))
        if token is None:
            return pages
    raise AssertionError("more than 60 pages")


@pytest.mark.parametrize(
    "params",
    [
        {**RANGE, "limit": 250},  # 1m, read as stored
        {**RANGE, "limit": 300, "sort": "desc"},
        {"end": RANGE["end"], "limit": 400},  # the tail, pages walking back
        {**RANGE, "interval": "1h", "limit": 5},
        {**RANGE, "interval": "1h", "limit": 4, "sort": "desc"},
        {"end": RANGE["end"], "interval": "30m", "limit": 7},
        {**RANGE, "interval": "15m", "align": "clock", "limit": 20},
        {**RANGE, "interval": "1d", "limit": 2},
        {**RANGE, "interval": "1w"},
    ],
    ids=["1m asc", "1m desc", "1m tail", "1h asc", "1h desc", "30m tail", "15m clock", "1d", "1w"],
)
@pytest.mark.parametrize("as_of", ["now", "before the revision"])
async def test_json_csv_and_parquet_pages_hold_the_same_rows(
    client, revised_sessions: Revised, params, as_of
) -> None:
    if as_of != "now":
        params = {**params, "as_of": revised_sessions.before}
    by_format = {fmt: await walk(client, params, fmt) for fmt in FORMATS}
    json_pages = by_format["json"]
    assert sum(len(p) for p in json_pages) > 0
    for fmt in ("csv", "parquet"):
        assert [len(p) for p in by_format[fmt]] == [len(p) for p in json_pages], fmt
        for want, got in zip(json_pages, by_format[fmt], strict=True):
            pd.testing.assert_frame_equal(got, want, obj=fmt)
    highs = pd.concat(json_pages)["high"]
    assert (highs.max() == REVISED_HIGH) == (as_of == "now")  # as_of applies to every format


async def test_parquet_columns_are_typed(client, conn) -> None:
    bars = session_bars(minutes=3)
    bars[0] = msgspec.structs.replace(bars[0], vwap=None, trade_count=None, volume=0.125)
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    r = await client.get(
        URL, params={"start": "2026-11-23T14:30:00Z", "end": "2026-11-23T21:00:00Z", "format": "parquet"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == PARQUET_MEDIA_TYPE
    assert r.headers["content-disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(r.content))
    types = {f.name: str(f.type) for f in table.schema}
    assert types["ts"] == types["as_of"] == "timestamp[us, tz=UTC]"
    assert types["open"] == types["volume"] == types["vwap"] == "double"
    assert types["trade_count"] == types["base_bars"] == "int64"
    assert types["complete"] == "bool" and types["provider"] == "string"
    rows = table.to_pylist()
    assert rows[0]["ts"] == datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    assert rows[0]["vwap"] is None and rows[0]["trade_count"] is None and rows[0]["volume"] == 0.125
    assert rows[1]["trade_count"] == bars[1].trade_count and rows[1]["base_bars"] is None
    assert all(row["complete"] for row in rows)
    df = pd.read_parquet(io.BytesIO(r.content))
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"


async def test_the_accept_header_negotiates_parquet(client, revised_sessions) -> None:
    for accept, media in [
        (PARQUET_MEDIA_TYPE, PARQUET_MEDIA_TYPE),
        (f"{PARQUET_MEDIA_TYPE}, application/json;q=0.5", PARQUET_MEDIA_TYPE),
        (f"application/json, {PARQUET_MEDIA_TYPE};q=0.5", "application/json"),
        (f"text/csv, {PARQUET_MEDIA_TYPE};q=0.5", "text/csv; charset=utf-8"),
        (f"{PARQUET_MEDIA_TYPE};q=1e999", "application/json"),
    ]:
        r = await client.get(URL, params={**RANGE, "limit": 5}, headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == media, accept
    r = await client.get(URL, params={**RANGE, "format": "json"}, headers={"Accept": PARQUET_MEDIA_TYPE})
    assert r.headers["content-type"].startswith("application/json")


async def test_parquet_errors_are_json_naming_the_parameter(client, revised_sessions) -> None:
    r = await client.get(URL, params={**RANGE, "format": "parquet", "interval": "60m"})
    assert r.status_code == 400 and r.json()["parameter"] == "interval"
    r = await client.get(URL, params={**RANGE, "format": "xlsx"})
    assert r.status_code == 400 and "format" in r.text


async def test_openapi_documents_the_file_media_types(client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    content = doc["paths"]["/stocks/{symbol}/history"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv", PARQUET_MEDIA_TYPE} <= set(content)
    assert content[PARQUET_MEDIA_TYPE]["schema"]["format"] == "binary"


def _symbol_frame(fmt: str, r) -> pd.DataFrame:
    """A /stocks/bars file, or its JSON, as one canonical frame with `symbol` first."""
    if fmt == "json":
        body = r.json()
        parts = [pd.DataFrame(bars, columns=COLUMNS).assign(symbol=s) for s, bars in body["bars"].items()]
        df = pd.concat(parts, ignore_index=True)
    elif fmt == "csv":
        df = pd.read_csv(io.StringIO(r.text))
    else:
        assert pq.read_schema(io.BytesIO(r.content)) == bar_schema(with_symbol=True)
        df = pd.read_parquet(io.BytesIO(r.content))
    return pd.concat([df[["symbol"]].reset_index(drop=True), _canonical(df)], axis=1)


@pytest.mark.parametrize(
    "params",
    [
        {**RANGE, "limit": 500},
        {**RANGE, "interval": "1h", "limit": 8},
        {"end": RANGE["end"], "interval": "30m", "limit": 9},
        {**RANGE, "interval": "1d"},
    ],
    ids=["1m", "1h", "30m tail", "1d"],
)
@pytest.mark.parametrize("as_of", ["now", "before the revision"])
async def test_stocks_bars_files_hold_the_rows_of_the_json_body(
    client, conn, revised_sessions: Revised, params, as_of
) -> None:
    v = session_bars("V", interval=Interval.M5, start=SESSIONS[0], mic="XNYS")
    await write_bars(conn, v, policy_version=1, advance_cursors=False)
    if as_of != "now":
        params = {**params, "as_of": revised_sessions.before}
    params = {**params, "symbols": "AAPL,V"} if params.get("interval") else {**params, "symbols": "AAPL"}
    by_format = {}
    for fmt in FORMATS:
        r = await client.get("/stocks/bars", params={**params, "format": fmt})
        assert r.status_code == 200, r.text
        by_format[fmt] = (_symbol_frame(fmt, r), r)
    want, body = by_format["json"][0], by_format["json"][1].json()
    assert len(want) > 0
    for fmt in ("csv", "parquet"):
        got, r = by_format[fmt]
        pd.testing.assert_frame_equal(got, want, obj=fmt)
        if as_of != "now":  # without it, each request reads at its own now
            assert pd.Timestamp(r.headers["x-as-of"]) == pd.Timestamp(body["as_of"])
        assert r.headers.get("x-truncated", "") == ",".join(body["truncated"])


async def test_intraday_files_hold_the_rows_of_the_json_body(client, conn) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((now - midnight).total_seconds() // 60) - 1)
    bars = SyntheticProvider().bars_for(
        "BTC-USD", "C247", Interval.M1, midnight, midnight + timedelta(minutes=minutes), now
    )
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    for interval in ("1m", "15m"):
        body = (await client.get("/stocks/BTC-USD/intraday", params={"interval": interval})).json()
        want = _canonical(pd.DataFrame(body["bars"], columns=COLUMNS))
        assert len(want) > 0
        for fmt in ("csv", "parquet"):
            r = await client.get("/stocks/BTC-USD/intraday", params={"interval": interval, "format": fmt})
            assert r.status_code == 200, r.text
            df, _ = _page(fmt, r)
            pd.testing.assert_frame_equal(_canonical(df), want, obj=fmt)
            assert r.headers["x-session-open"] == body["session_open"].replace("+00:00", "Z")
            assert r.headers["x-market-open"] == "true"
