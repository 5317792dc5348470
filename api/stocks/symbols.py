"""Symbols of /stocks/*: normalising, parsing lists, the universe look-up, stored intervals.

A requested ticker is first resolved to its security (`market_data.securities`): an old ticker
on a date it was valid (FB in 2022-05) or today's ticker on any date means the security, read
by its storage symbol (META); a ticker several securities had needs a date that chooses one
(400 otherwise). Tickers no security had are looked up in the universe as they are.

Every read checks its symbols against `symbol_universe`. Known symbols are remembered for
a minute per app, so the hot paths (/price, /history) skip that round trip; unknown ones are
always asked again, so a symbol added to the universe is served at once. A removed symbol
may still be served for up to a minute.

The intervals stored for a symbol (what bar reads are built from, `bar_reads.stored_for`) are
its tier's in the active policy plus those the store holds bars of; the latter are remembered
for a minute too, so an interval first stored for a symbol is read as stored within a minute.
"""

from __future__ import annotations

import time
import weakref
from datetime import date, datetime
from typing import NamedTuple

from api.errors import BadParameter, NotFound
from api.replica import Reads
from api.state import AppResources
from api.stocks import queries
from api.stocks.params import MAX_SYMBOLS
from market_data.bar_reads import ReadRefused, held_intervals, resolve_base, stored_for
from market_data.records import Interval, is_valid_symbol, utcnow
from market_data.securities import (
    AmbiguousTicker,
    Security,
    TickerHolder,
    choose_security,
    ticker_holders,
    within_life,
)
from market_data.timeframes import Align, Timeframe

KNOWN_TTL_SECONDS = 60.0


def normalize_symbol(symbol: str, parameter: str = "symbol") -> str:
    # spaces only, and ASCII before upper-casing ('\u017f'.upper() is 'S'): what SYMBOLS_RE documents
    s = symbol.strip(" ").upper() if symbol.isascii() else ""
    if not is_valid_symbol(s):
        raise BadParameter(
            f"{parameter}: {symbol[:20]!r} is not a ticker: expected 1-15 characters of A-Z, 0-9, "
            "'.' or '-', starting with a letter or digit",
            parameter=parameter,
        )
    return s


def parse_symbols(raw: str | None, parameter: str = "symbols") -> list[str]:
    """Distinct upper-cased tickers of a comma-separated list, in first-seen order."""
    out = list(dict.fromkeys(normalize_symbol(p, parameter) for p in (raw or "").split(",") if p.strip(" ")))
    if not out:
        raise BadParameter(f"{parameter}: name at least one symbol", parameter=parameter)
    if len(out) > MAX_SYMBOLS:
        raise BadParameter(
            f"{parameter}: at most {MAX_SYMBOLS} distinct symbols per request, got {len(out)}",
            parameter=parameter,
        )
    return out


class Listed(NamedTuple):
    """A symbol of the universe (the storage symbol of the security asked for)."""

    symbol: str
    exchange_mic: str
    tier: str
    security_id: int | None = None
    """The security the symbol stores (`market_data.securities`); None: no security master entry."""
    listed_from: date | None = None
    delisted_on: date | None = None
    """The security's life: its bars under `symbol` outside it belong to another security."""

    def within_life(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """[start, end) narrowed to the security's life (`securities.within_life`)."""
        return within_life(start, end, self.listed_from, self.delisted_on)


class _Today:
    """`on` default of the look-ups: the security a ticker means today."""


TODAY = _Today()


class _Directory:
    """The universe symbols asked for recently, and the intervals the store holds of them."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Listed, float]] = {}
        self._held: dict[str, tuple[set[Interval], float]] = {}
        self._holders: dict[str, tuple[list[TickerHolder], float]] = {}

    async def holders(self, reads: Reads, tickers: list[str]) -> dict[str, list[TickerHolder]]:
        """ticker -> the securities that had it, kept a minute. "None" is kept too for a universe
        symbol without a security (so its reads ask nothing more); other unknown tickers are
        asked again, so arbitrary names cannot grow the cache."""
        now = time.monotonic()
        out = {t: hit[0] for t in tickers if (hit := self._holders.get(t)) is not None and hit[1] > now}
        missing = [t for t in tickers if t not in out]
        if missing:
            found = await reads.run(lambda db: ticker_holders(db, missing))
            for t in missing:
                out[t] = found.get(t, [])
                if out[t] or t in self._known:
                    self._holders[t] = (out[t], now + KNOWN_TTL_SECONDS)
        return out

    async def listed(self, reads: Reads, symbols: list[str]) -> dict[str, Listed]:
        now = time.monotonic()
        found: dict[str, Listed] = {}
        missing: list[str] = []
        for s in symbols:
            hit = self._known.get(s)
            if hit is not None and hit[1] > now:
                found[s] = hit[0]
            else:
                missing.append(s)
        if missing:
            for row in await reads.run(lambda db: queries.exchanges_of(db, missing)):
                entry = Listed(row["symbol"], row["exchange_mic"], row["tier"], row["security_id"])
                found[entry.symbol] = entry
                self._known[entry.symbol] = (entry, now + KNOWN_TTL_SECONDS)
        return found

    async def held(self, reads: Reads, symbols: list[str]) -> dict[str, set[Interval]]:
        now = time.monotonic()
        out = {s: hit[0] for s in symbols if (hit := self._held.get(s)) is not None and hit[1] > now}
        missing = [s for s in symbols if s not in out]
        if missing:
            for s, held in (await reads.run(lambda db: held_intervals(db, missing))).items():
                out[s] = held
                self._held[s] = (held, now + KNOWN_TTL_SECONDS)
        return out


_DIRECTORIES: weakref.WeakKeyDictionary[AppResources, _Directory] = weakref.WeakKeyDictionary()


def _directory(resources: AppResources) -> _Directory:
    d = _DIRECTORIES.get(resources)
    if d is None:
        d = _DIRECTORIES[resources] = _Directory()
    return d


async def _resolve(
    resources: AppResources, tickers: list[str], on: date | _Today | None, parameter: str
) -> dict[str, Listed | None]:
    """ticker -> the universe entry of the security it means on `on` (None: not in the universe).

    Raises:
        BadParameter: a ticker several securities had, without a date that chooses one.
    """
    d = _directory(resources)
    holders = await d.holders(resources.reads, tickers)
    # the date matters only for a ticker several securities had (the clock is read only then)
    several = any(len(h) > 1 for h in holders.values())
    day = (utcnow().date() if isinstance(on, _Today) else on) if several else None
    chosen: dict[str, Security | None] = {}
    for t in tickers:
        try:
            chosen[t] = choose_security(t, holders.get(t, []), day)
        except AmbiguousTicker as exc:
            raise BadParameter(f"{parameter}: {exc}", parameter=parameter) from None
    storage = {t: sec.storage_symbol if sec else t for t, sec in chosen.items()}
    found = await d.listed(resources.reads, list(dict.fromkeys(storage.values())))
    out: dict[str, Listed | None] = {}
    for t, sec in chosen.items():
        entry = found.get(storage[t])
        if entry is not None and sec is not None:
            entry = entry._replace(
                security_id=sec.security_id, listed_from=sec.listed_from, delisted_on=sec.delisted_on
            )
        out[t] = entry
    return out


async def require_listed(resources: AppResources, symbol: str, on: date | _Today | None = TODAY) -> Listed:
    """The universe entry of the security `symbol` means on `on` (default today); 404 when none.

    Raises:
        BadParameter: a ticker several securities had and `on` (None: no date) chooses none.
    """
    s = normalize_symbol(symbol)
    found = (await _resolve(resources, [s], on, "symbol"))[s]
    if found is None:
        raise NotFound(f"symbol: {s} is not in the universe", parameter="symbol")
    return found


async def require_symbol(resources: AppResources, symbol: str) -> tuple[str, str]:
    """(symbol, exchange_mic) of a symbol in the universe; 404 otherwise."""
    found = await require_listed(resources, symbol)
    return found.symbol, found.exchange_mic


async def require_listed_many(
    resources: AppResources, raw: str | None, on: date | _Today | None = TODAY
) -> list[Listed]:
    """The securities of a comma-separated list of tickers on `on`, in request order; 404 naming
    unknowns, 400 naming a ticker several securities had that `on` does not choose among."""
    symbols = parse_symbols(raw)
    found = await _resolve(resources, symbols, on, "symbols")
    unknown = [s for s in symbols if found[s] is None]
    if unknown:
        raise NotFound(f"symbols: not in the universe: {', '.join(unknown)}", parameter="symbols")
    return [x for s in symbols if (x := found[s]) is not None]


async def listed_symbols(resources: AppResources, symbols: list[str]) -> list[Listed]:
    """The symbols of `symbols` (tickers) that are in the universe, in the given order."""
    found = await _directory(resources).listed(resources.reads, symbols)
    return [found[s] for s in symbols if s in found]


async def require_symbols(resources: AppResources, raw: str | None) -> dict[str, str]:
    """symbol -> exchange_mic of a comma-separated list, in request order; 404 naming unknowns."""
    return {x.symbol: x.exchange_mic for x in await require_listed_many(resources, raw)}


async def stored_intervals(resources: AppResources, listed: list[Listed]) -> dict[str, set[Interval]]:
    """The intervals stored for each symbol (`bar_reads.stored_for`), under the active policy."""
    if not listed:
        return {}
    policy = (await resources.policy.get(resources.db)).policy
    held = await _directory(resources).held(resources.reads, [x.symbol for x in listed])
    return {x.symbol: stored_for(policy, x.tier, held.get(x.symbol, set())) for x in listed}


def bases_of(
    timeframe: Timeframe, align: Align, listed: list[Listed], stored: dict[str, set[Interval]]
) -> dict[str, Interval]:
    """symbol -> the stored interval its `timeframe` bars are read or built from (`resolve_base`).

    Raises:
        BadParameter: naming `interval` and every symbol that cannot be read at it.
    """
    bases: dict[str, Interval] = {}
    refused: list[str] = []
    for x in listed:
        try:
            bases[x.symbol] = resolve_base(timeframe, align, stored[x.symbol], x.symbol, x.exchange_mic)
        except ReadRefused as exc:
            refused.append(exc.detail.removeprefix("interval: "))
    if refused:
        raise BadParameter(f"interval: {'; '.join(refused)}", parameter="interval")
    return bases
