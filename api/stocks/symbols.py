"""Symbols of /stocks/*: normalising, parsing lists, and the universe look-up.

Every read checks its symbols against `symbol_universe`. Known symbols are remembered for
a minute per app, so the hot paths (/price, /history) skip that round trip; unknown ones are
always asked again, so a symbol added to the universe is served at once. A removed symbol
may still be served for up to a minute.
"""

from __future__ import annotations

import time
import weakref

from api.errors import BadParameter, NotFound
from api.replica import Reads
from api.state import AppResources
from api.stocks import queries
from api.stocks.params import MAX_SYMBOLS
from market_data.records import is_valid_symbol

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


class _Directory:
    """symbol -> exchange MIC of the universe symbols asked for recently."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float]] = {}

    async def exchanges(self, reads: Reads, symbols: list[str]) -> dict[str, str]:
        now = time.monotonic()
        found: dict[str, str] = {}
        missing: list[str] = []
        for s in symbols:
            hit = self._known.get(s)
            if hit is not None and hit[1] > now:
                found[s] = hit[0]
            else:
                missing.append(s)
        if missing:
            for row in await reads.run(lambda db: queries.exchanges_of(db, missing)):
                found[row["symbol"]] = row["exchange_mic"]
                self._known[row["symbol"]] = (row["exchange_mic"], now + KNOWN_TTL_SECONDS)
        return found


_DIRECTORIES: weakref.WeakKeyDictionary[AppResources, _Directory] = weakref.WeakKeyDictionary()


def _directory(resources: AppResources) -> _Directory:
    d = _DIRECTORIES.get(resources)
    if d is None:
        d = _DIRECTORIES[resources] = _Directory()
    return d


async def require_symbol(resources: AppResources, symbol: str) -> tuple[str, str]:
    """(symbol, exchange_mic) of a symbol in the universe; 404 otherwise."""
    s = normalize_symbol(symbol)
    mic = (await _directory(resources).exchanges(resources.reads, [s])).get(s)
    if mic is None:
        raise NotFound(f"symbol: {s} is not in the universe", parameter="symbol")
    return s, mic


async def require_symbols(resources: AppResources, raw: str | None) -> dict[str, str]:
    """symbol -> exchange_mic of a comma-separated list, in request order; 404 naming unknowns."""
    symbols = parse_symbols(raw)
    found = await _directory(resources).exchanges(resources.reads, symbols)
    unknown = [s for s in symbols if s not in found]
    if unknown:
        raise NotFound(f"symbols: not in the universe: {', '.join(unknown)}", parameter="symbols")
    return {s: found[s] for s in symbols}
