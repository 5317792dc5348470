"""The latest values of each symbol, kept in process: what /price, /snapshots and WebSocket
snapshots serve without asking Postgres.

Per symbol: the newest quote and the two newest bars of each stored interval (a 1d snapshot
shows the previous day too), each as its notification payload. A symbol's values are read
from the primary the first time a read asks for them; from then on the API's LISTEN feed
(`api/ws/feed.py`: every `md_bars` / `md_quotes` notification, in the hub's pump) keeps them
current: a newer bar or quote replaces the older one, and a revision (same bar, later
`as_of`) replaces the version it corrects. Each API process has its own cache, fed by its own
LISTEN connection.

Nothing is served older than Postgres's newest, whatever happens to the feed:

- While the LISTEN connection is down (Postgres restarting, the backend terminated), notifications
  are lost: the cache serves nothing (`serving` is false) and every read goes to Postgres as
  without a cache.
- When the connection is back, everything cached is dropped (`invalidate`) before the first
  read is served from the cache again, so each symbol is read once more from the primary, after
  LISTEN was restored: the read sees every write committed before it, the feed every one after.
- A read that started before a loss or a reconnect is answered but its values are not kept
  (the generation changed while it ran).
- Loads read the primary, never the standby: a lagging standby could miss a write whose
  notification came before, which the cache would then keep.
- A load that fails because the primary cannot be reached (it is going away; the feed notices
  a moment later) is not an error: the read goes to Postgres as without a cache (the standby
  when one serves).
- A notification that does not decode as a bar or quote payload drops its symbol's values
  (read again on the next request) rather than leave them stale.

Reads with `as_of` (a past instant) never use the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import msgspec

from api.replica import REPLICA_FAILURES
from market_data.notifications import BarNotification, QuoteNotification, payload_json
from market_data.records import Interval

log = logging.getLogger("api.stocks.latest")

BARS_KEPT = 2
"""Bars kept per (symbol, interval): the newest and the one before (a snapshot's previous day)."""

# The newest BARS_KEPT bars (current versions) of each (symbol, interval), as bar payloads.
LOAD_BARS = f"""
SELECT b.j FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN unnest($2::text[]) AS iv(interval)
CROSS JOIN LATERAL (
    SELECT j FROM (
        SELECT DISTINCT ON (bars.ts) bars.ts,
               {payload_json("bar", table="bars", notified=False, versions="stored")} AS j
        FROM bars WHERE bars.symbol = s.symbol AND bars.interval = iv.interval
        ORDER BY bars.ts DESC, bars.as_of DESC LIMIT {BARS_KEPT}
    ) newest
) b"""

# The newest quote of each symbol, as a quote payload (WebSocket snapshots read it so too).
LATEST_QUOTES = f"""
SELECT q.j FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT {payload_json("quote", table="quotes", notified=False)} AS j
    FROM quotes WHERE quotes.symbol = s.symbol ORDER BY quotes.ts DESC LIMIT 1
) q"""

_decode_note = msgspec.json.Decoder(BarNotification | QuoteNotification).decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Latest:
    """One symbol's newest quote and newest bars per interval (newest first)."""

    quote: QuoteNotification | None = None
    bars: dict[str, list[BarNotification]] = field(default_factory=dict)
    loaded: bool = False
    """Read from Postgres since the feed last (re)connected; until then only notified values."""

    def bar(self, interval: str, nth: int = 0) -> BarNotification | None:
        kept = self.bars.get(interval)
        return kept[nth] if kept is not None and len(kept) > nth else None

    def merge(self, note: BarNotification | QuoteNotification) -> None:
        """Keep `note` if it is newer than what is held (a revision: the same bar, a later as_of)."""
        if isinstance(note, QuoteNotification):
            if self.quote is None or note.ts >= self.quote.ts:
                self.quote = _bare(note)
            return
        kept = self.bars.setdefault(note.interval.value, [])
        for i, old in enumerate(kept):
            if old.ts == note.ts:
                if note.as_of >= old.as_of:
                    kept[i] = _bare(note)
                return
            if note.ts > old.ts:
                kept.insert(i, _bare(note))
                del kept[BARS_KEPT:]
                return
        if len(kept) < BARS_KEPT:
            kept.append(_bare(note))


N = TypeVar("N", BarNotification, QuoteNotification)


def _bare(note: N) -> N:
    # entries are served as snapshot entries: without the notification's `notified_at`
    return note if note.notified_at is None else msgspec.structs.replace(note, notified_at=None)


def snapshot_entry(note: BarNotification | QuoteNotification) -> msgspec.Raw:
    """The WebSocket snapshot entry of a held value (its payload without `notified_at`)."""
    return msgspec.Raw(_encode(note))


class LatestValues:
    """The cache of one API process (module docstring)."""

    def __init__(self, primary: Callable[[], asyncpg.Pool]) -> None:
        self._primary = primary
        self._entries: dict[str, Latest] = {}
        self._generation = 0
        self._listening: Callable[[], bool] = lambda: False
        self.hits = 0
        """Symbols served from the cache."""
        self.loads = 0
        """Symbols read from Postgres into the cache."""

    def follow(self, listening: Callable[[], bool]) -> None:
        """Serve only while `listening()` (the LISTEN connection is up)."""
        self._listening = listening

    @property
    def serving(self) -> bool:
        """Whether reads may be answered from the cache now."""
        return self._listening()

    def invalidate(self) -> None:
        """Drop everything held (the feed was lost or restored): the next reads load again."""
        self._entries.clear()
        self._generation += 1

    def apply(self, symbol: str, payload: bytes) -> None:
        """Take in one `md_bars` / `md_quotes` notification of `symbol`."""
        try:
            note = _decode_note(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if self._entries.pop(symbol, None) is not None:
                log.debug("dropped the cached values of %s: undecodable notification", symbol)
            return
        entry = self._entries.get(note.symbol)
        if entry is None:
            entry = self._entries[note.symbol] = Latest()
        entry.merge(note)

    async def get(self, symbols: list[str]) -> dict[str, Latest] | None:
        """The held values of `symbols` (missing ones read from the primary first); None when the
        cache cannot answer (the feed is down, or was lost or restored during the read)."""
        if not self.serving:
            return None
        entries = self._entries
        missing = [s for s in symbols if (e := entries.get(s)) is None or not e.loaded]
        if missing:
            generation = self._generation
            try:
                fresh = await load_latest(self._primary(), missing)
            except REPLICA_FAILURES as exc:
                # the primary is going away (the feed will notice): the caller reads through,
                # from the standby when one serves
                log.info(
                    "latest values: cannot load from the primary (%s): reading through", type(exc).__name__
                )
                return None
            if generation != self._generation or not self.serving:
                return None
            for s in missing:
                entry = entries.get(s)
                if entry is None:
                    entry = entries[s] = Latest()
                for note in fresh.get(s, ()):
                    entry.merge(note)
                entry.loaded = True
            self.loads += len(missing)
        self.hits += len(symbols) - len(missing)
        return {s: entries[s] for s in symbols}


async def load_latest(
    db: asyncpg.Pool, symbols: list[str]
) -> dict[str, list[BarNotification | QuoteNotification]]:
    """The newest quote and bars of `symbols` as payloads, by symbol (one connection, two queries)."""
    intervals = [iv.value for iv in Interval]
    out: dict[str, list[BarNotification | QuoteNotification]] = {}
    async with db.acquire() as conn:
        rows = [*await conn.fetch(LOAD_BARS, symbols, intervals), *await conn.fetch(LATEST_QUOTES, symbols)]
    for r in rows:
        note = _decode_note(r["j"])
        out.setdefault(note.symbol, []).append(note)
    return out
