"""Response bodies of /stocks/*."""

from __future__ import annotations

from datetime import datetime

from api.schemas import ResponseModel


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
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float | None
    trade_count: int | None
    provider: str
    as_of: datetime


class HistoryResponse(ResponseModel, kw_only=True):
    symbol: str
    interval: str
    count: int
    bars: list[BarOut]
    as_of: datetime | None = None
    """Set when the read was point-in-time: the versions known at that instant."""
