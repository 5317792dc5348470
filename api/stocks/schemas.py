"""Response bodies of /stocks/*."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from api.schemas import ResponseModel
from api.stocks.queries import BAR_COLUMNS
from market_data.adjustment import AdjustmentSet, AppliedAction
from market_data.aggregate import READ_AS_STORED, Bars


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
    """Start of the bar (daily: the session date at 00:00 UTC; weekly: the Monday; monthly: the 1st)."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Whole for equities (written without a fraction), fractional for crypto pairs (0.01 BTC)."""
    vwap: float | None
    trade_count: int | None
    provider: str
    """Who delivered it; a built bar from several providers joins them with `+`."""
    as_of: datetime
    """When this version was stored; a built bar: the newest version it was built from."""
    complete: bool
    """A stored bar: final. A built bar: every base bar of its span is stored or confirmed empty
    (no trades), and final; false for the bar still running and for one with a missing base bar."""
    base_bars: int | None
    """How many stored bars a built bar was made of; null for a bar read as stored."""


def datetimes(ns: np.ndarray) -> list[datetime]:
    """UTC datetimes of int64 ns since the epoch (microsecond precision, as Postgres stores).

    Values repeat (a page's `as_of` is mostly one write's): each distinct one is made once.
    """
    if ns.size > 1 and ns[0] == ns[-1] and (ns == ns[0]).all():
        return [_datetimes(ns[:1])[0]] * ns.size
    return _datetimes(ns)


def _datetimes(ns: np.ndarray) -> list[datetime]:
    # whole microseconds as float seconds are exact to well under a microsecond, which
    # fromtimestamp rounds away; faster than pandas or timedelta arithmetic per value
    fromtimestamp = datetime.fromtimestamp
    return [fromtimestamp(s, UTC) for s in ((ns // 1000) / 1e6).tolist()]


def volumes(volume: np.ndarray) -> list[int] | list[float]:
    """Whole numbers as ints (shares), else floats: a page is one or the other."""
    if volume.size and np.array_equal(volume, np.floor(volume)) and np.abs(volume).max() < 2**53:
        return volume.astype(np.int64).tolist()
    return volume.tolist()


def optional_ints(values: np.ndarray) -> list[int | None]:
    return [None if v != v else int(v) for v in values.tolist()]


def optional_floats(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]


BAR_FIELDS = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "provider",
    "as_of",
    "complete",
    "base_bars",
)
"""The fields of a bar in every encoding (BarOut's, the CSV header's), in order."""


def field_columns(bars: Bars, ts: list[Any], as_of: list[Any]) -> list[list[Any]]:
    """The columns of `bars` as Python values in BAR_FIELDS order, with `ts` and `as_of` as given."""
    return [
        ts,
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        volumes(bars.volume),
        optional_floats(bars.vwap),
        optional_ints(bars.trade_count),
        bars.provider.tolist(),
        as_of,
        bars.complete.tolist(),
        [None if n == READ_AS_STORED else n for n in bars.base_bars.tolist()],
    ]


def bars_out(bars: Bars) -> list[BarOut]:
    """BarOut of each bar, in the order given."""
    return [
        BarOut(
            ts=ts,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=vol,
            vwap=vw,
            trade_count=n,
            provider=p,
            as_of=a,
            complete=done,
            base_bars=nb,
        )
        for ts, o, h, lo, c, vol, vw, n, p, a, done, nb in zip(
            *field_columns(bars, datetimes(bars.ts), datetimes(bars.as_of)), strict=True
        )
    ]


_STORED_FIELDS = tuple(BAR_COLUMNS.split(", "))


def stored_bar_out(row: asyncpg.Record) -> BarOut:
    """BarOut of a stored bar selected as `queries.BAR_COLUMNS` (snapshots read single bars so)."""
    return BarOut(**dict(zip(_STORED_FIELDS, row, strict=True)), complete=True, base_bars=None)


class AdjustmentOut(ResponseModel, kw_only=True):
    """The corporate actions an adjusted read applied (known at its `as_of`)."""

    mode: str
    """`split`, `dividend` or `all`."""
    id: str
    """Names the set: two reads with the same id applied the same actions with the same factors."""
    actions: list[AppliedAction]
    """By ex-date; each bar before an action's ex-date has its prices times `price_factor`, its
    volume times `volume_factor`."""


def adjustment_out(applied: AdjustmentSet | None) -> AdjustmentOut | None:
    """The response form of an adjustment set; None for a raw read."""
    if applied is None:
        return None
    return AdjustmentOut(mode=applied.mode.value, id=applied.id, actions=applied.actions)


class HistoryResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    built_from: str | None
    """The stored interval the bars were built from; null when `interval` is read as stored."""
    align: str | None
    """How built intraday bars are aligned (`session` or `clock`); null otherwise."""
    sort: str = "asc"
    count: int
    bars: list[BarOut]
    as_of: datetime
    """The instant the versions were read at: `as_of` if given, else the first page's time."""
    next_page_token: str | None = None
    """Pass as `page_token` for the next page; null on the last page."""
    adjustment: AdjustmentOut | None = None
    """The corporate actions applied (`adjustment` other than raw); null for raw bars."""


class IntradayResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    built_from: str | None
    """The stored interval the bars were built from; null when `interval` is read as stored."""
    align: str | None
    exchange_mic: str
    session_open: datetime
    session_close: datetime
    market_open: bool
    """Whether the market is trading now (false in a lunch break)."""
    count: int
    bars: list[BarOut]
    adjustment: AdjustmentOut | None = None
    """The corporate actions applied; null for raw bars."""


class MultiBarsResponse(ResponseModel, kw_only=True):
    interval: str
    built_from: dict[str, str]
    """symbol -> the stored interval its bars were built from (symbols read as stored are absent)."""
    align: str | None
    start: datetime | None
    end: datetime
    as_of: datetime
    limit: int
    bars: dict[str, list[BarOut]]
    """symbol -> bars, oldest first, in the order the symbols were asked for."""
    truncated: list[str]
    """Symbols with more than `limit` bars in the range (page through /history for the rest)."""
    adjustments: dict[str, AdjustmentOut] = {}
    """symbol -> the corporate actions applied to its bars (empty for raw bars)."""


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
