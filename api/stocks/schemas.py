"""Response bodies of /stocks/*."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

from api.schemas import ResponseModel, quantity


class PriceResponse(ResponseModel, kw_only=True):
    symbol: str
    price: float
    ts: datetime
    """When the price was observed: the quote's time, or the end of the bar it closes."""
    provider: str
    source: str
    """`quote` or `bar:<interval>` (the latest bar's close when no newer quote exists)."""
    bid: float | None = None
    ask: float | None = None
    exchange_mic: str
    market_open: bool


class BarOut(ResponseModel, kw_only=True):
    ts: datetime
    """Start of the bar's interval (daily bars: the session date at 00:00 UTC)."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Whole for equities, fractional for crypto pairs (0.01 BTC)."""
    vwap: float | None
    trade_count: int | None
    provider: str
    as_of: datetime
    """When this version of the bar was stored."""


def bars_out(rows: Iterable[asyncpg.Record]) -> list[BarOut]:
    """BarOut of rows selected as `queries.BAR_COLUMNS` (in that order)."""
    return [
        BarOut(
            ts=ts,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=quantity(v),
            vwap=vw,
            trade_count=n,
            provider=p,
            as_of=a,
        )
        for ts, o, h, lo, c, v, vw, n, p, a in rows
    ]


class HistoryResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    sort: str = "asc"
    count: int
    bars: list[BarOut]
    as_of: datetime
    """The instant the versions were read at: `as_of` if given, else the first page's time."""
    next_page_token: str | None = None
    """Pass as `page_token` for the next page; null on the last page."""


class IntradayResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    exchange_mic: str
    session_open: datetime
    session_close: datetime
    market_open: bool
    """Whether the market is trading now (false in a lunch break)."""
    count: int
    bars: list[BarOut]


class MultiBarsResponse(ResponseModel, kw_only=True):
    interval: str
    start: datetime | None
    end: datetime
    as_of: datetime
    limit: int
    bars: dict[str, list[BarOut]]
    """symbol -> bars, oldest first, in the order the symbols were asked for."""
    truncated: list[str]
    """Symbols with more than `limit` bars in the range (page through /history for the rest)."""


class QuoteOut(ResponseModel, kw_only=True):
    ts: datetime
    last: float
    bid: float | None
    ask: float | None
    bid_size: float | None
    ask_size: float | None
    provider: str


class Snapshot(ResponseModel, kw_only=True):
    symbol: str
    exchange_mic: str
    market_open: bool
    latest_quote: QuoteOut | None
    minute_bar: BarOut | None
    """The latest 1m bar."""
    daily_bar: BarOut | None
    """The latest 1d bar."""
    prev_daily_bar: BarOut | None
    """The 1d bar before `daily_bar`."""


class SnapshotsResponse(ResponseModel, kw_only=True):
    snapshots: dict[str, Snapshot]


class BarVersion(ResponseModel, kw_only=True):
    as_of: datetime
    provider: str
    status: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: int | None
    policy_version: int | None


class VersionsResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    ts: datetime
    count: int
    versions: list[BarVersion]
    """Every stored version, oldest first; the last one is the current bar."""
