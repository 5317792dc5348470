"""Snapshots sent on subscribe: the newest bar and quote of each subscribed symbol.

Entries of stored bars and quotes come from the API's latest-value cache (`api/stocks/latest.py`:
the newest notification payloads, without `notified_at`) or, while it cannot answer, are built
by Postgres from the same fields and SQL as the ingest path's `pg_notify` payloads
(`market_data.notifications.payload_json`), so a snapshot entry and a live message look the
same apart from `notified_at`. A timeframe that a symbol does not store is
read through the bar read pipeline (`market_data.bar_reads`): its entry is the newest built
bar, in the same shape plus `complete` and `base_bars`.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from api.state import AppResources
from api.stocks.latest import LATEST_QUOTES, snapshot_entry
from api.stocks.params import EARLIEST
from api.stocks.schemas import bars_out
from api.stocks.symbols import listed_symbols, stored_intervals
from api.ws.protocol import is_pattern, pattern_prefix
from market_data.bar_reads import BarRead, read_bars, stored_for
from market_data.notifications import payload_json
from market_data.records import utcnow
from market_data.securities import AmbiguousTicker, choose_security, ticker_holders
from market_data.timeframes import Align, base_interval, parse_timeframe, reads_as_stored

# Active symbols matching any LIKE pattern ('%' or 'GEN%'); tickers hold no '%' or '_'.
MATCHING_SYMBOLS = """
SELECT symbol FROM symbol_universe WHERE active AND symbol LIKE ANY($1::text[])
ORDER BY symbol LIMIT $2"""

LATEST_BARS = f"""
SELECT b.j FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN unnest($2::text[]) AS iv(interval)
CROSS JOIN LATERAL (
    SELECT {payload_json("bar", table="bars", notified=False, versions="stored")} AS j
    FROM bars WHERE bars.symbol = s.symbol AND bars.interval = iv.interval
    ORDER BY bars.ts DESC, bars.as_of DESC LIMIT 1
) b"""


class BuiltBarEntry(msgspec.Struct, kw_only=True, tag_field="type", tag="bar"):
    """A snapshot entry of a built bar: the fields of a bar notification, then complete and base_bars."""

    symbol: str
    interval: str
    ts: datetime
    as_of: datetime
    provider: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: int | None
    complete: bool
    base_bars: int | None


_encode_entry = msgspec.json.Encoder().encode


class SnapshotRows(msgspec.Struct, kw_only=True):
    bars: list[msgspec.Raw]
    quotes: list[msgspec.Raw]
    truncated: bool


async def unknown_symbols(resources: AppResources, symbols: list[str]) -> list[str]:
    """The tickers of `symbols` that are not in the universe (in the given order; known symbols
    are remembered for a minute, as for HTTP reads: `api/stocks/symbols.py`)."""
    if not symbols:
        return []
    known = {x.symbol for x in await listed_symbols(resources, symbols)}
    return [s for s in symbols if s not in known]


async def current_symbols(db: asyncpg.Pool, tickers: list[str]) -> dict[str, str]:
    """ticker -> the symbol its security is stored (and followed) under today, for the tickers
    of `tickers` that name a security by another ticker (FB -> META); ambiguous ones are left out."""
    today = utcnow().date()
    out: dict[str, str] = {}
    for ticker, holders in (await ticker_holders(db, tickers)).items():
        try:
            security = choose_security(ticker, holders, today)
        except AmbiguousTicker:
            continue
        if security is not None and security.storage_symbol != ticker:
            out[ticker] = security.storage_symbol
    return out


async def _expand(conn: asyncpg.Pool, names: list[str], limit: int) -> tuple[list[str], bool]:
    """Tickers of `names` with patterns replaced by the active symbols they match (at most `limit`)."""
    exact = [n for n in names if not is_pattern(n)]
    likes = [pattern_prefix(n) + "%" for n in names if is_pattern(n)]
    if not likes:
        return exact, False
    rows = await conn.fetch(MATCHING_SYMBOLS, likes, limit + 1)
    matched = [r["symbol"] for r in rows]
    truncated = len(matched) > limit
    return list(dict.fromkeys(exact + matched[:limit])), truncated


async def _newest_built(
    resources: AppResources, conn: asyncpg.Pool, interval: str, symbols: list[str]
) -> tuple[list[str], list[msgspec.Raw]]:
    """The symbols whose `interval` is read as stored, and the newest built bar of the others."""
    timeframe = parse_timeframe(interval)
    listed = await listed_symbols(resources, symbols)
    # what the policy sweeps for a symbol's tier is read as stored without asking the store what
    # else it holds for it (a pattern's snapshot may name a thousand symbols)
    policy = (await resources.policy.get(resources.db)).policy
    swept = {x.symbol for x in listed if timeframe.stored in stored_for(policy, x.tier, set())}
    stored = await stored_intervals(resources, [x for x in listed if x.symbol not in swept])
    as_stored: list[str] = []
    entries: list[msgspec.Raw] = []
    now = utcnow()
    for x in listed:
        if x.symbol in swept or reads_as_stored(timeframe, Align.SESSION, stored[x.symbol], x.exchange_mic):
            as_stored.append(x.symbol)
            continue
        base = base_interval(timeframe, Align.SESSION, stored[x.symbol], x.exchange_mic)
        if base is None:
            continue  # no stored interval builds it: nothing to show, as for a symbol without bars
        read = BarRead(
            symbol=x.symbol,
            exchange_mic=x.exchange_mic,
            timeframe=timeframe,
            align=Align.SESSION,
            base=base,
            start=EARLIEST,
            end=now,
            as_of=now,
            backward=True,
        )
        for bar in bars_out((await read_bars(conn, read, 1)).bars):
            entry = BuiltBarEntry(
                symbol=x.symbol,
                interval=timeframe.value,
                ts=bar.ts,
                as_of=bar.as_of,
                provider=bar.provider,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                vwap=bar.vwap,
                trade_count=bar.trade_count,
                complete=bar.complete,
                base_bars=bar.base_bars,
            )
            entries.append(msgspec.Raw(_encode_entry(entry)))
    return as_stored, entries


async def read_snapshot(
    resources: AppResources,
    bars: dict[str, list[str]],
    quotes: list[str],
    *,
    max_symbols: int,
) -> SnapshotRows:
    """Newest bar per (symbol, interval) and newest quote per symbol.

    Args:
        bars: interval -> tickers or patterns whose bars of that interval are wanted.
        quotes: tickers or patterns whose quotes are wanted.
        max_symbols: cap on the symbols a pattern list expands to.
    """
    out_bars: list[msgspec.Raw] = []
    out_quotes: list[msgspec.Raw] = []
    truncated = False
    db = resources.db
    as_stored: dict[str, list[str]] = {}
    for interval, names in sorted(bars.items()):
        symbols, cut = await _expand(db, names, max_symbols)
        truncated |= cut
        if symbols:
            symbols, built = await _newest_built(resources, db, interval, symbols)
            out_bars.extend(built)
        if symbols:
            as_stored[interval] = symbols
    quoted: list[str] = []
    if quotes:
        quoted, cut = await _expand(db, quotes, max_symbols)
        truncated |= cut
    wanted = list(dict.fromkeys([*(s for names in as_stored.values() for s in names), *quoted]))
    held = await resources.latest.get(wanted) if wanted else {}
    if held is None:  # the cache cannot answer: read the store
        async with db.acquire() as conn:
            for interval, symbols in as_stored.items():
                rows = await conn.fetch(LATEST_BARS, symbols, [interval])
                out_bars.extend(msgspec.Raw(r["j"].encode()) for r in rows)
            if quoted:
                rows = await conn.fetch(LATEST_QUOTES, quoted)
                out_quotes.extend(msgspec.Raw(r["j"].encode()) for r in rows)
    else:
        for interval, symbols in as_stored.items():
            out_bars.extend(snapshot_entry(b) for s in symbols if (b := held[s].bar(interval)) is not None)
        out_quotes.extend(snapshot_entry(q) for s in quoted if (q := held[s].quote) is not None)
    return SnapshotRows(bars=out_bars, quotes=out_quotes, truncated=truncated)
