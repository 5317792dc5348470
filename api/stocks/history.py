"""Reads of one symbol's bars: /history pages, the intraday session, the versions of a bar.

Every bar read goes through `market_data.bar_reads.read_bars` (fetch at `as_of`, adjust,
aggregate, completeness); this module only turns request parameters into a read and the
page it returns into a response body, which the JSON, CSV and Parquet encoders share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
import msgspec

from api.errors import BadParameter, NotFound
from api.schemas import quantity
from api.state import AppResources
from api.stocks import queries
from api.stocks.pagination import HistoryWindow, decode_token, encode_token, history_window
from api.stocks.params import LATEST, SortOrder, check_limit, choosing_date, instant, parse_interval
from api.stocks.schemas import (
    BarVersion,
    HistoryResponse,
    IntradayResponse,
    VersionsResponse,
    adjustment_out,
    bars_out,
)
from api.stocks.symbols import Listed, stored_intervals
from market_data import calendar
from market_data.adjustment import Adjustment, AdjustmentSet
from market_data.aggregate import Bars
from market_data.bar_reads import BarRead, read_bars, resolve_base
from market_data.records import Interval, utcnow
from market_data.timeframes import Align, parse_timeframe

MAX_SESSION_BARS = 2_000
"""More than the 1m bars of any session (24 h = 1,440)."""
MAX_VERSIONS = 1_000


class HistoryQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters of one /history request, as given."""

    interval: str
    align: Align
    start: datetime | None
    end: datetime | None
    limit: int
    as_of: datetime | None
    sort: SortOrder
    page_token: str | None
    as_file: bool
    """The response is a file (CSV or Parquet): `limit` may be larger than a JSON page's."""
    adjustment: Adjustment = Adjustment.RAW


@dataclass(frozen=True)
class HistoryPage:
    """One page of /history, whatever its encoding."""

    window: HistoryWindow
    bars: Bars
    """In display order: oldest first for `sort=asc`, newest first for `desc`."""
    next_page_token: str | None
    adjustment: AdjustmentSet | None = None
    """The corporate actions applied (None: raw)."""

    @property
    def built_from(self) -> str | None:
        return self.window.base.value if self.window.base.value != self.window.timeframe else None

    @property
    def align(self) -> str | None:
        intraday = parse_timeframe(self.window.timeframe).is_intraday
        return self.window.align.value if self.built_from is not None and intraday else None

    def response(self) -> HistoryResponse:
        out = bars_out(self.bars)
        return HistoryResponse(
            symbol=self.window.symbol,
            interval=self.window.timeframe,
            built_from=self.built_from,
            align=self.align,
            sort=self.window.sort.value,
            count=len(out),
            bars=out,
            as_of=self.window.as_of,
            next_page_token=self.next_page_token,
            adjustment=adjustment_out(self.adjustment),
        )


async def read_page(db: asyncpg.Pool, window: HistoryWindow, listed: Listed, limit: int) -> HistoryPage:
    """The next `limit` bars of a window of `listed`'s security, and the token of the page after."""
    read = window.read(listed.exchange_mic, listed.security_id)
    start, end = listed.within_life(read.start, read.end)
    page = await read_bars(db, msgspec.structs.replace(read, start=start, end=end), limit)
    bars = page.bars
    after = None
    if page.more:
        cursor = calendar.to_datetime(int(bars.ts[-1]))
        after = encode_token(msgspec.structs.replace(window, cursor=cursor))
    if window.backward and window.sort is SortOrder.ASC:
        bars = bars.reversed()  # the tail of the range, shown oldest first
    return HistoryPage(window=window, bars=bars, next_page_token=after, adjustment=page.adjustment)


def resolution_date(q: HistoryQuery) -> date | None:
    """The date that chooses the security a ticker means: `start`, else `end` (of the page
    token's window when the request leaves them out); None: the request names no date."""
    if q.page_token is not None and q.start is None and q.end is None:
        window = decode_token(q.page_token)
        return choosing_date(window.start, window.end)
    return choosing_date(q.start, q.end)


async def history(resources: AppResources, listed: Listed, q: HistoryQuery) -> HistoryPage:
    """The /history page `q` asks for, in any format."""
    timeframe = parse_interval(q.interval)
    limit = check_limit(q.limit, as_file=q.as_file)
    stored = (await stored_intervals(resources, [listed]))[listed.symbol]
    now = utcnow()
    window = history_window(
        symbol=listed.symbol,
        exchange_mic=listed.exchange_mic,
        timeframe=timeframe,
        align=q.align,
        stored=stored,
        sort=q.sort,
        start=q.start,
        end=q.end,
        as_of=q.as_of,
        page_token=q.page_token,
        now=now,
        as_of_default=resources.reads.newest_complete(now),
        adjustment=q.adjustment,
    )
    return await resources.reads.run(lambda db: read_page(db, window, listed, limit), as_of=window.as_of)


@dataclass(frozen=True)
class IntradaySession:
    """The bars of the session trading now (or of the last one), whatever their encoding."""

    listed: Listed
    timeframe: str
    built_from: str | None
    align: str | None
    session_open: datetime
    session_close: datetime
    market_open: bool
    bars: Bars
    adjustment: AdjustmentSet | None = None
    """The corporate actions applied (None: raw)."""

    def response(self) -> IntradayResponse:
        bars = bars_out(self.bars)
        return IntradayResponse(
            symbol=self.listed.symbol,
            interval=self.timeframe,
            built_from=self.built_from,
            align=self.align,
            exchange_mic=self.listed.exchange_mic,
            session_open=self.session_open,
            session_close=self.session_close,
            market_open=self.market_open,
            count=len(bars),
            bars=bars,
            adjustment=adjustment_out(self.adjustment),
        )


async def intraday_session(
    resources: AppResources,
    listed: Listed,
    interval: str,
    align: Align,
    adjustment: Adjustment = Adjustment.RAW,
) -> IntradaySession:
    """Bars of the session trading now, or of the last one (the latest session opened before now)."""
    timeframe = parse_interval(interval)
    if not timeframe.is_intraday:
        raise BadParameter(
            f"interval: {timeframe.value} is not intraday; /intraday serves 1m-59m and 1h-23h "
            "(read daily and longer bars from /history)",
            parameter="interval",
        )
    now = utcnow()
    try:
        opened, closes, market_open = calendar.session_window(listed.exchange_mic, now)
    except calendar.CalendarError as exc:
        raise NotFound(
            f"symbol: no {listed.exchange_mic} session to show: {exc}", parameter="symbol"
        ) from None
    stored = (await stored_intervals(resources, [listed]))[listed.symbol]
    base = resolve_base(timeframe, align, stored, listed.symbol, listed.exchange_mic)
    read = BarRead(
        symbol=listed.symbol,
        exchange_mic=listed.exchange_mic,
        timeframe=timeframe,
        align=align,
        base=base,
        start=opened,
        end=closes,
        as_of=LATEST,  # the session as stored now, whatever the versions' as_of
        adjustment=adjustment,
        security_id=listed.security_id,
    )
    page = await resources.reads.run(lambda db: read_bars(db, read, MAX_SESSION_BARS))
    return IntradaySession(
        listed=listed,
        timeframe=timeframe.value,
        built_from=base.value if read.built else None,
        align=align.value if read.built else None,
        session_open=opened,
        session_close=closes,
        market_open=market_open,
        bars=page.bars,
        adjustment=page.adjustment,
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
