# Over 400 lines: one user-facing client (its methods, paging, retries and typed frames) read as one page.
"""A Python client of the market-data API: pandas DataFrames out, pages and retries handled.

    from market_data.client import MarketDataClient
    md = MarketDataClient("http://localhost:8001")
    daily = md.history("AAPL", "1d", start="2026-11-01")   # DataFrame, UTC DatetimeIndex `ts`

Every bar frame has a UTC DatetimeIndex named `ts` (the bar's start) and typed columns:
open, high, low, close, volume, vwap float64; trade_count and base_bars Int64 (<NA> when
unknown / read as stored); provider string; as_of datetime64[us, UTC]; complete bool.
`history()` reads Parquet pages (typed on the wire) and follows `X-Next-Page-Token`;
`bars()` continues every symbol the API truncated with `/history` pages at the same `as_of`.

Errors: a 4xx is raised at once as `BadRequest` (400: the API's message, naming the
parameter), `NotFound` (404) or `ApiError`; a 503 is retried after its `Retry-After` (at most
`max_retries` times, each wait at most `max_retry_wait` seconds), then raised as
`Unavailable`. `live()` is an async iterator over `/ws` that subscribes, yields every
message, and on a lost connection reconnects (with backoff) and subscribes again.

Importable without Airflow or the API; needs httpx, pandas, pyarrow and websockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tenacity
import websockets

PARQUET = "application/vnd.apache.parquet"
FILE_PAGE_ROWS = 200_000
"""Bars per /history Parquet page (the API's largest file page)."""
JSON_PAGE_ROWS = 10_000
"""Bars per symbol of a /stocks/bars request (the API's largest)."""
MAX_BARS_PER_REQUEST = 100_000
"""The API's cap of `limit` x symbols on /stocks/bars."""
_TIMESTAMP_COLUMNS = ("ts", "as_of")
_ABOUT = re.compile(r"about (\d+)")
"""How many bars fit a page, in the 400 of a page built from too many base bars."""
_CLOSE_CODES_NOT_RETRIED = {1008, 4400, 4404}
"""The server refused the connection for what the client asked: reconnecting would not help."""

Instant: TypeAlias = "datetime | pd.Timestamp | str"


class ApiError(Exception):
    """An error answer of the API: `status_code`, `detail` (the API's message), `parameter`."""

    def __init__(self, status_code: int, detail: str, parameter: str | None = None) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.parameter = parameter


class BadRequest(ApiError):
    """400: a parameter is malformed, out of range, or asks for what the service cannot answer."""


class NotFound(ApiError):
    """404: an unknown symbol (the detail lists them), or no such bar."""


class Unavailable(ApiError):
    """503 after every retry: Postgres or Redis is down or restarting."""


class _RetryAfter(Exception):
    def __init__(self, error: ApiError, seconds: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.seconds = seconds


def _iso(value: Instant | None) -> str | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat().replace("+00:00", "Z")


def _error(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
        detail, parameter = str(body.get("detail", r.text)), body.get("parameter")
    except (ValueError, AttributeError):
        detail, parameter = r.text[:500] or r.reason_phrase, None
    kind = {400: BadRequest, 404: NotFound, 503: Unavailable}.get(r.status_code, ApiError)
    return kind(r.status_code, detail, parameter)


def _retry_after(r: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(r.headers.get("retry-after", default)))
    except ValueError:
        return default


def bar_frame(table: pa.Table) -> pd.DataFrame:
    """A bar table (the API's Parquet columns) as a DataFrame indexed by `ts`."""
    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return df.set_index("ts")


def _json_bar_frame(bars: list[dict[str, Any]]) -> pd.DataFrame:
    """JSON bars (BarOut) as the same frame `bar_frame` gives."""
    df = pd.DataFrame(
        bars,
        columns=[
            "ts", "open", "high", "low", "close", "volume", "vwap",
            "trade_count", "provider", "as_of", "complete", "base_bars",
        ],
    )  # fmt: skip
    for column in _TIMESTAMP_COLUMNS:
        df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    for column in ("open", "high", "low", "close", "volume", "vwap"):
        df[column] = pd.to_numeric(df[column]).astype("float64")
    for column in ("trade_count", "base_bars"):
        df[column] = pd.array(df[column].tolist(), dtype="Int64")
    df["complete"] = df["complete"].astype(bool)
    df["provider"] = df["provider"].astype(str)
    return df.set_index("ts")


def _empty_bar_frame() -> pd.DataFrame:
    return _json_bar_frame([])


class MarketDataClient:
    """A client of one API (`base_url`); use as a context manager or `close()` it."""

    def __init__(
        self,
        base_url: str = "http://localhost:8001",
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> MarketDataClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- HTTP -------------------------------------------------------------------------------

    def get(
        self, path: str, params: dict[str, Any] | None = None, *, accept: str | None = None
    ) -> httpx.Response:
        """GET `path`; a 503 is retried after its Retry-After; any other error is raised."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Accept": accept} if accept else None

        def attempt() -> httpx.Response:
            r = self._http.get(path, params=query, headers=headers)
            if r.status_code == 503:
                raise _RetryAfter(_error(r), _retry_after(r, 1.0))
            if r.status_code >= 400:
                raise _error(r)
            return r

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            retry=tenacity.retry_if_exception_type(_RetryAfter),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryAfter as exc:
            raise exc.error from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        seconds = exc.seconds if isinstance(exc, _RetryAfter) else 1.0
        return min(seconds, self.max_retry_wait)

    # -- bars -------------------------------------------------------------------------------

    def history(
        self,
        symbol: str,
        interval: str = "1m",
        start: Instant | None = None,
        end: Instant | None = None,
        *,
        as_of: Instant | None = None,
        align: str | None = None,
        limit: int | None = None,
        adjustment: str | None = None,
    ) -> pd.DataFrame:
        """Bars of one symbol in [start, end), oldest first, every page followed.

        Without `start`: the latest `limit` bars before `end` (default 1,000). `limit` caps the
        bars returned either way; `as_of` reads each bar as known then (the first page's
        `as_of` holds for every page). Pages of bars built from more base bars than the API reads
        at once (a 400 naming `limit`) are asked for again smaller. `adjustment` (`split`,
        `dividend`, `all`; default raw) adjusts by the corporate actions known at `as_of`; the
        set's id is in `df.attrs["adjustment_id"]`.
        """
        if start is None and limit is None:
            limit = 1_000
        params: dict[str, Any] = {
            "interval": interval,
            "start": _iso(start),
            "end": _iso(end),
            "as_of": _iso(as_of),
            "align": align,
            "format": "parquet",
            "adjustment": adjustment,
        }
        frames: list[pd.DataFrame] = []
        adjustment_id: str | None = None
        have, token, page_cap = 0, None, FILE_PAGE_ROWS
        while True:
            page_rows = page_cap if limit is None else min(page_cap, limit - have)
            try:
                r = self.get(f"/stocks/{symbol}/history", {**params, "limit": page_rows, "page_token": token})
            except BadRequest as exc:
                # a page of bars built from more base bars than one request reads: smaller pages
                if exc.parameter != "limit" or page_rows <= 1:
                    raise
                hint = _ABOUT.search(exc.detail)
                page_cap = max(1, min(page_rows // 2, int(hint.group(1)) if hint else page_rows))
                continue
            frame = bar_frame(pq.read_table(io.BytesIO(r.content)))
            frames.append(frame)
            adjustment_id = r.headers.get("x-adjustment-id")
            have += len(frame)
            token = r.headers.get("x-next-page-token")
            if token is None or (limit is not None and have >= limit):
                break
        df = pd.concat(frames) if len(frames) > 1 else frames[0]
        if adjustment_id is not None:
            df.attrs["adjustment_id"] = adjustment_id
        return df.sort_index() if start is None else df

    def bars(
        self,
        symbols: Sequence[str] | str,
        interval: str = "1m",
        start: Instant | None = None,
        end: Instant | None = None,
        *,
        as_of: Instant | None = None,
        align: str | None = None,
        limit: int | None = None,
        adjustment: str | None = None,
    ) -> pd.DataFrame:
        """Bars of several symbols, indexed by (symbol, ts), each oldest first (`adjustment` as
        on `history`).

        With `start`: every bar in [start, end) (a symbol the API truncated is continued with
        /history pages at the response's `as_of`), at most `limit` per symbol if given. Without
        it: the latest `limit` (default 1,000) before `end`.
        """
        names = [s.strip() for s in (symbols.split(",") if isinstance(symbols, str) else symbols)]
        per_symbol = limit if limit is not None else (JSON_PAGE_ROWS if start is not None else 1_000)
        per_symbol = max(1, min(per_symbol, JSON_PAGE_ROWS, MAX_BARS_PER_REQUEST // max(1, len(names))))
        body = self.get(
            "/stocks/bars",
            {
                "symbols": ",".join(names),
                "interval": interval,
                "start": _iso(start),
                "end": _iso(end),
                "as_of": _iso(as_of),
                "align": align,
                "limit": per_symbol,
                "adjustment": adjustment,
            },
        ).json()
        frames: dict[str, pd.DataFrame] = {}
        for symbol, bars in body["bars"].items():
            df = _json_bar_frame(bars)
            wanted = limit
            if start is not None and symbol in body["truncated"] and (wanted is None or len(df) < wanted):
                rest = self.history(
                    symbol,
                    interval,
                    start=df.index[-1] + timedelta(microseconds=1),
                    end=body["end"],
                    as_of=body["as_of"],
                    align=align,
                    limit=None if wanted is None else wanted - len(df),
                    adjustment=adjustment,
                )
                df = pd.concat([df, rest])
            frames[symbol] = df
        if not frames:
            return _empty_bar_frame()
        return pd.concat(frames, names=["symbol", "ts"])

    def export_bars(
        self,
        symbols: Sequence[str] | str,
        start: Instant,
        end: Instant | None = None,
        *,
        path: str | Path,
        interval: str = "1m",
        as_of: Instant | None = None,
        align: str | None = None,
        format: str = "parquet",
        adjustment: str | None = None,
    ) -> dict[str, Any]:
        """Download a bulk export (`/exports/bars`) to `path`, check every file's sha256; the manifest.

        Raises:
            ValueError: a file's checksum or row count does not match the manifest.
        """
        names = symbols if isinstance(symbols, str) else ",".join(symbols)
        params = {
            "symbols": names,
            "interval": interval,
            "start": _iso(start),
            "end": _iso(end),
            "as_of": _iso(as_of),
            "align": align,
            "format": format,
            "adjustment": adjustment,
        }
        r = self.get("/exports/bars", params)
        Path(path).write_bytes(r.content)
        return verify_export(path)

    # -- other reads ------------------------------------------------------------------------

    def snapshots(self, symbols: Sequence[str] | str) -> pd.DataFrame:
        """One row per symbol: market_open, the latest quote, 1m bar, daily and previous daily bar.

        Columns are flattened (`latest_quote.last`, `minute_bar.close`, `daily_bar.ts`, ...);
        timestamps are UTC, a missing part is NaN/NaT.
        """
        names = symbols if isinstance(symbols, str) else ",".join(symbols)
        body = self.get("/stocks/snapshots", {"symbols": names}).json()
        df = pd.json_normalize(list(body["snapshots"].values()))
        for column in df.columns:
            if column.endswith((".ts", ".as_of")):
                df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601")
        return df.set_index("symbol")

    def coverage(
        self,
        symbol: str,
        interval: str | None = None,
        start: Instant | None = None,
        end: Instant | None = None,
    ) -> pd.DataFrame:
        """Per session: expected, stored, confirmed_empty, missing, queued_for_backfill bars.

        Indexed by the session's open (UTC DatetimeIndex `open`); `session` is its date, `close`
        its close; `counted` (attrs) is the stored interval counted.
        """
        body = self.get(
            f"/stocks/{symbol}/coverage",
            {"interval": interval, "start": _iso(start), "end": _iso(end)},
        ).json()
        columns = ["session", "open", "close", "expected", "stored", "confirmed_empty", "missing",
                   "queued_for_backfill"]  # fmt: skip
        df = pd.DataFrame(body["sessions"], columns=columns)
        for column in ("open", "close"):
            df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601")
        for column in columns[3:]:
            df[column] = df[column].astype("int64")
        df.attrs.update(symbol=body["symbol"], interval=body["interval"], counted=body["counted"])
        return df.set_index("open")

    # -- WebSocket --------------------------------------------------------------------------

    async def live(
        self,
        *,
        bars: Iterable[str] = (),
        quotes: Iterable[str] = (),
        intervals: Iterable[str] = ("1m",),
        max_backoff: float = 30.0,
        max_reconnects: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Messages of `/ws` for a subscription, as dicts, reconnecting when the connection drops.

        Yields every message the server sends (`subscribed`, `snapshot`, `bar`, `quote`,
        `heartbeat`, `resync`, ...). After a lost connection it reconnects (backoff from 0.5 s
        doubling to `max_backoff`), yields `{"type": "reconnected", "attempt": n}` and
        subscribes again: a fresh `snapshot` follows, so a consumer keyed by (symbol, interval,
        ts) misses nothing it holds. Raises `BadRequest` when the server refuses the
        subscription, and `ApiError` on a close the client caused (1008, 4400, 4404) or after
        `max_reconnects` failed attempts in a row.
        """
        request = {
            "action": "subscribe",
            "bars": list(bars),
            "quotes": list(quotes),
            "intervals": list(intervals),
            "id": 1,
        }
        url = "ws" + self.base_url.removeprefix("http") + "/ws"
        failures, backoff = 0, 0.5
        while True:
            try:
                async with websockets.connect(url, compression=None, max_size=2**24) as ws:
                    await ws.send(json.dumps(request))
                    if failures:
                        yield {"type": "reconnected", "attempt": failures}
                    failures, backoff = 0, 0.5
                    acknowledged = False
                    async for raw in ws:
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind == "error" and not acknowledged:  # the reply to our subscribe
                            raise BadRequest(400, message.get("detail", ""), message.get("parameter"))
                        acknowledged = acknowledged or kind == "subscribed"
                        yield message
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                if code in _CLOSE_CODES_NOT_RETRIED:
                    raise ApiError(code, exc.rcvd.reason if exc.rcvd else str(exc)) from None
            except (TimeoutError, OSError, websockets.InvalidHandshake):
                pass
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                raise ApiError(503, f"/ws: could not reconnect after {max_reconnects} attempts")
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)


def verify_export(path: str | Path) -> dict[str, Any]:
    """The manifest of a downloaded export, after checking every file's sha256 and row count.

    Raises:
        ValueError: a file is missing, or its checksum or size differs from the manifest.
    """
    with zipfile.ZipFile(path) as archive:
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
        for f in manifest["files"]:
            data = archive.read(f["path"])
            if hashlib.sha256(data).hexdigest() != f["sha256"] or len(data) != f["bytes"]:
                raise ValueError(f"{f['path']}: does not match the manifest's sha256")
    return manifest


def read_export(path: str | Path) -> pd.DataFrame:
    """Every file of a downloaded export as one frame indexed by (symbol, ts)."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        frames = {}
        for f in manifest["files"]:
            data = io.BytesIO(archive.read(f["path"]))
            if manifest["format"] == "parquet":
                df = bar_frame(pq.read_table(data).drop_columns(["symbol"]))
            else:
                df = pd.read_csv(data).drop(columns=["symbol"])
                df = _json_bar_frame(df.astype(object).where(df.notna(), None).to_dict("records"))
            frames[f["symbol"]] = df
    return pd.concat(frames, names=["symbol", "ts"]) if frames else _empty_bar_frame()
