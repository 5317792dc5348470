"""Reads over many symbols at once: /stocks/bars (the bar read pipeline per symbol) and /stocks/snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.errors import BadParameter
from api.schemas import optional_quantity
from api.state import AppResources
from api.stocks import queries
from api.stocks.params import EARLIEST, bar_range, check_limit, instant, parse_interval
from api.stocks.schemas import (
    BarOut,
    MultiBarsResponse,
    QuoteOut,
    Snapshot,
    SnapshotsResponse,
    adjustment_out,
    bars_out,
    stored_bar_out,
)
from api.stocks.symbols import Listed, bases_of, stored_intervals
from market_data import calendar
from market_data.adjustment import Adjustment, AdjustmentSet
from market_data.aggregate import Bars
from market_data.bar_reads import BarRead, read_bars
from market_data.notifications import BarNotification
from market_data.timeframes import Align

MAX_TOTAL_BARS = 100_000
"""Most bars one /stocks/bars response may hold: `limit` x number of symbols."""


@dataclass(frozen=True)
class MultiBars:
    """The bars of several symbols read at one `as_of`, whatever their encoding."""

    timeframe: str
    built_from: dict[str, str]
    align: str | None
    start: datetime | None
    end: datetime
    as_of: datetime
    limit: int
    bars: dict[str, Bars]
    """symbol -> bars, oldest first, in the order the symbols were asked for."""
    truncated: list[str]
    adjustments: dict[str, AdjustmentSet]
    """symbol -> the corporate actions applied to its bars (empty for raw bars)."""

    def response(self) -> MultiBarsResponse:
        return MultiBarsResponse(
            interval=self.timeframe,
            built_from=self.built_from,
            align=self.align,
            start=self.start,
            end=self.end,
            as_of=self.as_of,
            limit=self.limit,
            bars={symbol: bars_out(bars) for symbol, bars in self.bars.items()},
            truncated=self.truncated,
            adjustments={
                s: out for s, a in self.adjustments.items() if (out := adjustment_out(a)) is not None
            },
        )


async def multi_bars(
    resources: AppResources,
    listed: list[Listed],
    *,
    interval: str,
    align: Align,
    start: datetime | None,
    end: datetime | None,
    as_of: datetime | None,
    limit: int,
    now: datetime,
    adjustment: Adjustment = Adjustment.RAW,
) -> MultiBars:
    """Per symbol: the first `limit` bars from `start`, or without `start` the latest `limit` before `end`.

    Each symbol is read from its own stored intervals (a T0 symbol's 1h bars from 1m, a T1
    symbol's from 5m); one that cannot be read at `interval` makes the request a 400 naming them.
    Each symbol's range is narrowed to its security's life (`Listed.within_life`).
    """
    check_limit(limit, as_file=False)
    if limit * len(listed) > MAX_TOTAL_BARS:
        raise BadParameter(
            f"limit: {limit} bars x {len(listed)} symbols is more than the {MAX_TOTAL_BARS} bars "
            "one response may hold; lower limit or ask for fewer symbols",
            parameter="limit",
        )
    timeframe = parse_interval(interval)
    lo, hi = bar_range(timeframe, start, end, now)
    at = instant(as_of, "as_of") if as_of is not None else resources.reads.newest_complete(now)
    bases = bases_of(timeframe, align, listed, await stored_intervals(resources, listed))
    reads = [
        BarRead(
            symbol=x.symbol,
            exchange_mic=x.exchange_mic,
            timeframe=timeframe,
            align=align,
            base=bases[x.symbol],
            start=first,
            end=last,
            as_of=at,
            backward=lo is None,
            adjustment=adjustment,
            security_id=x.security_id,
        )
        for x in listed
        for first, last in [x.within_life(lo or EARLIEST, hi)]
    ]
    out: dict[str, Bars] = {}
    truncated: list[str] = []
    applied: dict[str, AdjustmentSet] = {}

    async def read_all(db: asyncpg.Pool) -> None:
        out.clear()
        truncated.clear()
        applied.clear()
        async with db.acquire() as conn:
            for read in reads:
                page = await read_bars(conn, read, limit)
                out[read.symbol] = page.bars.reversed() if read.backward else page.bars
                if page.more:
                    truncated.append(read.symbol)
                if page.adjustment is not None:
                    applied[read.symbol] = page.adjustment

    await resources.reads.run(read_all, as_of=at)
    return MultiBars(
        timeframe=timeframe.value,
        built_from={r.symbol: r.base.value for r in reads if r.built},
        align=align.value if timeframe.is_intraday and any(r.built for r in reads) else None,
        start=lo,
        end=hi,
        as_of=at,
        limit=limit,
        bars=out,
        truncated=truncated,
        adjustments=applied,
    )


async def snapshots(resources: AppResources, exchanges: dict[str, str], now: datetime) -> SnapshotsResponse:
    """Latest quote, latest 1m bar, latest and previous 1d bar of each symbol (null when missing).

    From the latest-value cache (`api/stocks/latest.py`) when it can answer, else from Postgres.
    """
    held = await resources.latest.get(list(exchanges))
    if held is None:
        return await resources.reads.run(lambda db: stored_snapshots(db, exchanges, now))
    out = {}
    for s, mic in exchanges.items():
        entry = held[s]
        q = entry.quote
        out[s] = Snapshot(
            symbol=s,
            exchange_mic=mic,
            market_open=calendar.is_open_at(mic, now),
            latest_quote=None
            if q is None
            else quote_out(q.ts, q.last, q.bid, q.ask, q.bid_size, q.ask_size, q.provider),
            minute_bar=_held_bar(entry.bar("1m")),
            daily_bar=_held_bar(entry.bar("1d")),
            prev_daily_bar=_held_bar(entry.bar("1d", 1)),
        )
    return SnapshotsResponse(snapshots=out)


def _held_bar(note: BarNotification | None) -> BarOut | None:
    if note is None:
        return None
    return BarOut(
        ts=note.ts,
        open=note.open,
        high=note.high,
        low=note.low,
        close=note.close,
        volume=note.volume,
        vwap=note.vwap,
        trade_count=note.trade_count,
        provider=note.provider,
        as_of=note.as_of,
        complete=True,
        base_bars=None,
    )


def quote_out(
    ts: datetime,
    last: float,
    bid: float | None,
    ask: float | None,
    bid_size: float | None,
    ask_size: float | None,
    provider: str,
) -> QuoteOut:
    return QuoteOut(
        ts=ts,
        last=last,
        bid=bid,
        ask=ask,
        bid_size=optional_quantity(bid_size),
        ask_size=optional_quantity(ask_size),
        provider=provider,
    )


async def stored_snapshots(db: asyncpg.Pool, exchanges: dict[str, str], now: datetime) -> SnapshotsResponse:
    """Latest quote, latest 1m bar, latest and previous 1d bar of each symbol, read from Postgres."""
    symbols = list(exchanges)
    async with db.acquire() as conn:
        bar_rows = await queries.snapshot_bars(conn, symbols)
        quote_rows = await queries.latest_quotes(conn, symbols)
    minute: dict[str, BarOut] = {}
    daily: dict[str, list[BarOut]] = {}
    for r in bar_rows:
        bar = stored_bar_out(r[2:])
        if r["interval"] == "1m":
            minute[r["symbol"]] = bar
        else:
            daily.setdefault(r["symbol"], []).append(bar)  # newest first
    quotes = {
        r["symbol"]: quote_out(
            r["ts"], r["last"], r["bid"], r["ask"], r["bid_size"], r["ask_size"], r["provider"]
        )
        for r in quote_rows
    }
    out = {}
    for s, mic in exchanges.items():
        days = daily.get(s, [])
        out[s] = Snapshot(
            symbol=s,
            exchange_mic=mic,
            market_open=calendar.is_open_at(mic, now),
            latest_quote=quotes.get(s),
            minute_bar=minute.get(s),
            daily_bar=days[0] if days else None,
            prev_daily_bar=days[1] if len(days) > 1 else None,
        )
    return SnapshotsResponse(snapshots=out)
