"""Snapshots sent on subscribe: the newest bar and quote of each subscribed symbol.

Entries are built by Postgres from the same fields and SQL as the ingest path's `pg_notify`
payloads (`market_data.notifications.payload_json`), so a snapshot entry and a live message
look the same apart from `notified_at`.
"""

from __future__ import annotations

import asyncpg
import msgspec

from api.ws.protocol import is_pattern, pattern_prefix
from market_data.notifications import payload_json

KNOWN_SYMBOLS = "SELECT symbol FROM symbol_universe WHERE symbol = ANY($1::text[])"

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

LATEST_QUOTES = f"""
SELECT q.j FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT {payload_json("quote", table="quotes", notified=False)} AS j
    FROM quotes WHERE quotes.symbol = s.symbol ORDER BY quotes.ts DESC LIMIT 1
) q"""


class SnapshotRows(msgspec.Struct, kw_only=True):
    bars: list[msgspec.Raw]
    quotes: list[msgspec.Raw]
    truncated: bool


async def unknown_symbols(db: asyncpg.Pool, symbols: list[str]) -> list[str]:
    """The tickers of `symbols` that are not in the universe (in the given order)."""
    if not symbols:
        return []
    known = {r["symbol"] for r in await db.fetch(KNOWN_SYMBOLS, symbols)}
    return [s for s in symbols if s not in known]


async def _expand(conn: asyncpg.Connection, names: list[str], limit: int) -> tuple[list[str], bool]:
    """Tickers of `names` with patterns replaced by the active symbols they match (at most `limit`)."""
    exact = [n for n in names if not is_pattern(n)]
    likes = [pattern_prefix(n) + "%" for n in names if is_pattern(n)]
    if not likes:
        return exact, False
    rows = await conn.fetch(MATCHING_SYMBOLS, likes, limit + 1)
    matched = [r["symbol"] for r in rows]
    truncated = len(matched) > limit
    return list(dict.fromkeys(exact + matched[:limit])), truncated


async def read_snapshot(
    db: asyncpg.Pool,
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
    async with db.acquire() as conn:
        for interval, names in sorted(bars.items()):
            symbols, cut = await _expand(conn, names, max_symbols)
            truncated |= cut
            if symbols:
                rows = await conn.fetch(LATEST_BARS, symbols, [interval])
                out_bars.extend(msgspec.Raw(r["j"].encode()) for r in rows)
        if quotes:
            symbols, cut = await _expand(conn, quotes, max_symbols)
            truncated |= cut
            if symbols:
                rows = await conn.fetch(LATEST_QUOTES, symbols)
                out_quotes.extend(msgspec.Raw(r["j"].encode()) for r in rows)
    return SnapshotRows(bars=out_bars, quotes=out_quotes, truncated=truncated)
