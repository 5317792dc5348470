"""Reads of one symbol's bars: /history pages, the intraday session, the versions of a bar."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from api.errors import NotFound
from api.schemas import quantity
from api.stocks import queries
from api.stocks.pagination import HistoryWindow, encode_token
from api.stocks.params import IntradayInterval, SortOrder, instant
from api.stocks.schemas import (
    BarVersion,
    HistoryResponse,
    IntradayResponse,
    VersionsResponse,
    bars_out,
)
from market_data import calendar
from market_data.records import Interval, utcnow

MAX_SESSION_BARS = 2_000
"""More than the 1m bars of any session (24 h = 1,440)."""
MAX_VERSIONS = 1_000


async def read_page(
    db: asyncpg.Pool, window: HistoryWindow, limit: int
) -> tuple[list[asyncpg.Record], HistoryWindow | None]:
    """The next `limit` bars of a window in walk order, and the window of the page after."""
    lo, hi = window.remaining()
    w = window
    rows = await queries.bar_page(
        db, w.symbol, w.interval, lo, hi, w.as_of, limit + 1, newest_first=w.backward
    )
    if len(rows) <= limit:
        return rows, None
    del rows[limit:]
    return rows, msgspec.structs.replace(window, cursor=rows[-1][0])


async def history_page(db: asyncpg.Pool, window: HistoryWindow, limit: int) -> HistoryResponse:
    rows, after = await read_page(db, window, limit)
    if window.backward and window.sort is SortOrder.ASC:
        rows.reverse()  # the tail of the range, shown oldest first
    bars = bars_out(rows)
    return HistoryResponse(
        symbol=window.symbol,
        interval=window.interval.value,
        sort=window.sort.value,
        count=len(bars),
        bars=bars,
        as_of=window.as_of,
        next_page_token=encode_token(after) if after is not None else None,
    )


async def intraday_session(
    db: asyncpg.Pool, symbol: str, mic: str, interval: IntradayInterval
) -> IntradayResponse:
    """Bars of the session trading now, or of the last one (the latest session opened before now)."""
    now = utcnow()
    try:
        opened, closes, market_open = calendar.session_window(mic, now)
    except calendar.CalendarError as exc:
        raise NotFound(f"symbol: no {mic} session to show: {exc}", parameter="symbol") from None
    rows = await queries.session_bars(db, symbol, Interval(interval.value), opened, closes, MAX_SESSION_BARS)
    bars = bars_out(rows)
    return IntradayResponse(
        symbol=symbol,
        interval=interval.value,
        exchange_mic=mic,
        session_open=opened,
        session_close=closes,
        market_open=market_open,
        count=len(bars),
        bars=bars,
    )


async def bar_versions(
    db: asyncpg.Pool, symbol: str, interval: Interval, ts: datetime | None
) -> VersionsResponse:
    at = instant(ts, "ts")
    rows = await queries.bar_versions(db, symbol, interval, at, MAX_VERSIONS)
    if not rows:
        raise NotFound(f"ts: no {interval.value} bar of {symbol} starts at {at.isoformat()}", parameter="ts")
    # BAR_VERSIONS selects BarVersion's fields
    versions = [BarVersion(**{**r, "volume": quantity(r["volume"])}) for r in rows]
    return VersionsResponse(
        symbol=symbol, interval=interval.value, ts=at, count=len(versions), versions=versions
    )
