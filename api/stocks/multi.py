"""Reads over many symbols at once: /stocks/bars (the bar read pipeline per symbol) and /stocks/snapshots."""

from __future__ import annotations

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
    bars_out,
    stored_bar_out,
)
from api.stocks.symbols import Listed, stored_intervals
from market_data import calendar
from market_data.bar_reads import BarRead, ReadRefused, read_bars, resolve_base
from market_data.notifications import BarNotification
from market_data.timeframes import Align

MAX_TOTAL_BARS = 100_000
"""Most bars one /stocks/bars response may hold: `limit` x number of symbols."""


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
) -> MultiBarsResponse:
    """Per symbol: the first `limit` bars from `start`, or without `start` the latest `limit` before `end`.

    Each symbol is read from its own stored intervals (a T0 symbol's 1h bars from 1m, a T1
    symbol's from 5m); one that cannot be read at `interval` makes the request a 400 naming them.
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
    stored = await stored_intervals(resources, listed)
    reads: list[BarRead] = []
    refused: list[str] = []
    for x in listed:
        try:
            base = resolve_base(timeframe, align, stored[x.symbol], x.symbol, x.exchange_mic)
        except ReadRefused as exc:
            refused.append(exc.detail.removeprefix("interval: "))
            continue
        reads.append(
            BarRead(
                symbol=x.symbol,
                exchange_mic=x.exchange_mic,
                timeframe=timeframe,
                align=align,
                base=base,
                start=lo or EARLIEST,
                end=hi,
                as_of=at,
                backward=lo is None,
            )
        )
    if refused:
        raise BadParameter(f"interval: {'; '.join(refused)}", parameter="interval")
    out: dict[str, list[BarOut]] = {}
    truncated: list[str] = []

    async def read_all(db: asyncpg.Pool) -> None:
        out.clear()
        truncated.clear()
        async with db.acquire() as conn:
            for read in reads:
                page = await read_bars(conn, read, limit)
                out[read.symbol] = bars_out(page.bars.reversed() if read.backward else page.bars)
                if page.more:
                    truncated.append(read.symbol)

    await resources.reads.run(read_all, as_of=at)
    return MultiBarsResponse(
        interval=timeframe.value,
        built_from={r.symbol: r.base.value for r in reads if r.built},
        align=align.value if timeframe.is_intraday and any(r.built for r in reads) else None,
        start=lo,
        end=hi,
        as_of=at,
        limit=limit,
        bars=out,
        truncated=truncated,
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
