"""The security master: a permanent id per security, and the history of its tickers.

A security keeps its `security_id` through renames. Its bars are stored under its
`storage_symbol` (the universe symbol that sweeps it: today's ticker when it was seeded) and
bounded by its life [`listed_from`, `delisted_on`), so a ticker reused by another company
later, stored under the same string, never mixes with it. `security_tickers` says which
ticker meant the security on which dates (FB until 2022-06-09, META since).

Resolving a ticker (`security_of`): the security that had it on the date asked for; a ticker
only one security ever had means that security on any date (today's ticker spans the rename:
META in 2022-06-01 is the security that was FB then); a ticker several securities had, with
no date, or with a date inside none of their lives, is ambiguous (`AmbiguousTicker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import asyncpg
import msgspec

FOREVER = date(1900, 1, 1)
"""`valid_from` of a ticker the security had since before any stored data."""


class Security(msgspec.Struct, frozen=True, kw_only=True):
    security_id: int
    storage_symbol: str
    """The `bars.symbol` its bars are stored under."""
    exchange_mic: str
    listed_from: date | None = None
    delisted_on: date | None = None


class TickerHolder(msgspec.Struct, frozen=True, kw_only=True):
    """A security that had a ticker, and when ([valid_from, valid_to))."""

    security: Security
    valid_from: date
    valid_to: date | None


class AmbiguousTicker(ValueError):
    """A ticker that meant several securities, without a date that picks one."""

    def __init__(self, ticker: str, spans: list[str]) -> None:
        super().__init__(
            f"{ticker} meant {len(spans)} securities ({'; '.join(spans)}): give a date inside one of "
            "them (`start` or `end`) to choose"
        )


_CANDIDATES = """
SELECT t.ticker, s.security_id, s.storage_symbol, s.exchange_mic, s.listed_from, s.delisted_on,
       t.valid_from, t.valid_to
FROM security_tickers t JOIN securities s USING (security_id)
WHERE t.ticker = ANY($1::text[]) ORDER BY t.ticker, t.valid_from"""


def _security(r: asyncpg.Record) -> Security:
    return Security(
        security_id=r["security_id"],
        storage_symbol=r["storage_symbol"],
        exchange_mic=r["exchange_mic"],
        listed_from=r["listed_from"],
        delisted_on=r["delisted_on"],
    )


def within_life(
    start: datetime, end: datetime, listed_from: date | None, delisted_on: date | None
) -> tuple[datetime, datetime]:
    """[start, end) narrowed to a security's life [listed_from, delisted_on) (bars stored under
    its symbol outside it are another security's); empty (end == start) when they do not meet."""
    if listed_from is not None:
        start = max(start, datetime(listed_from.year, listed_from.month, listed_from.day, tzinfo=UTC))
    if delisted_on is not None:
        end = min(end, datetime(delisted_on.year, delisted_on.month, delisted_on.day, tzinfo=UTC))
    return start, max(start, end)


def _within(on: date, lo: date | None, hi: date | None) -> bool:
    return (lo is None or lo <= on) and (hi is None or on < hi)


async def ticker_holders(
    conn: asyncpg.Connection | asyncpg.Pool, tickers: list[str]
) -> dict[str, list[TickerHolder]]:
    """ticker -> every security that had it, oldest span first (tickers no security had: absent)."""
    out: dict[str, list[TickerHolder]] = {}
    for r in await conn.fetch(_CANDIDATES, tickers):
        holder = TickerHolder(security=_security(r), valid_from=r["valid_from"], valid_to=r["valid_to"])
        out.setdefault(r["ticker"], []).append(holder)
    return out


def choose_security(ticker: str, holders: list[TickerHolder], on: date | None) -> Security | None:
    """The security `ticker` means on `on`, among its `holders` (see the module docstring).

    Raises:
        AmbiguousTicker: several securities had the ticker and `on` does not choose one.
    """
    by_id = {h.security.security_id: h.security for h in holders}
    if len(by_id) <= 1:
        return next(iter(by_id.values()), None)
    if on is not None:
        held = {h.security.security_id for h in holders if _within(on, h.valid_from, h.valid_to)}
        if len(held) != 1:
            held = {s.security_id for s in by_id.values() if _within(on, s.listed_from, s.delisted_on)}
        if len(held) == 1:
            return by_id[held.pop()]
    spans = [
        f"security {h.security.security_id} from {h.valid_from}"
        + (f" until {h.valid_to}" if h.valid_to else "")
        for h in holders
    ]
    raise AmbiguousTicker(ticker, spans)


async def security_of(
    conn: asyncpg.Connection | asyncpg.Pool, ticker: str, on: date | None
) -> Security | None:
    """The security `ticker` means on `on`; None when no security had it.

    Raises:
        AmbiguousTicker: several securities had the ticker and `on` does not choose one.
    """
    return choose_security(ticker, (await ticker_holders(conn, [ticker])).get(ticker, []), on)


_ENSURE = """
WITH new AS (
    INSERT INTO securities (storage_symbol, exchange_mic, name)
    SELECT u.symbol, u.mic, u.name FROM unnest($1::text[], $2::text[], $3::text[]) AS u(symbol, mic, name)
    ON CONFLICT (storage_symbol) WHERE delisted_on IS NULL DO NOTHING
    RETURNING security_id, storage_symbol
), held AS (
    INSERT INTO security_tickers (security_id, ticker, valid_from)
    SELECT security_id, storage_symbol, $4 FROM new
    ON CONFLICT (ticker, valid_from) DO NOTHING
)
SELECT count(*) FROM new"""


async def ensure_securities(conn: asyncpg.Connection, listings: Sequence[tuple[str, str, str | None]]) -> int:
    """A security for each (symbol, exchange_mic, name) without a live one, holding its ticker
    since FOREVER (unless a security held it before); returns how many were created."""
    if not listings:
        return 0
    symbols, mics, names = (list(col) for col in zip(*listings, strict=True))
    return int(await conn.fetchval(_ENSURE, symbols, mics, names, FOREVER))


async def record_ticker_change(
    conn: asyncpg.Connection, security_id: int, old: str, new: str, effective: date
) -> None:
    """The security had `old` until `effective` and has `new` from then (its ticker history).

    The old ticker's span starts where the security's previous ticker ended (FOREVER if none).
    """
    previous_end = await conn.fetchval(
        """SELECT max(valid_to) FROM security_tickers
           WHERE security_id = $1 AND ticker <> ALL($2::text[]) AND valid_to <= $3""",
        security_id,
        [old, new],
        effective,
    )
    await conn.execute(
        "DELETE FROM security_tickers WHERE security_id = $1 AND ticker = ANY($2::text[])",
        security_id,
        [old, new],
    )
    await conn.executemany(
        "INSERT INTO security_tickers (security_id, ticker, valid_from, valid_to) VALUES ($1, $2, $3, $4)",
        [(security_id, old, previous_end or FOREVER, effective), (security_id, new, effective, None)],
    )


_HISTORY = """
SELECT ticker, valid_from, valid_to FROM security_tickers WHERE security_id = $1 ORDER BY valid_from"""


class TickerSpan(msgspec.Struct, frozen=True, kw_only=True):
    ticker: str
    valid_from: date
    valid_to: date | None


async def ticker_history(conn: asyncpg.Connection | asyncpg.Pool, security_id: int) -> list[TickerSpan]:
    """The tickers of a security, oldest first."""
    return [TickerSpan(**dict(r)) for r in await conn.fetch(_HISTORY, security_id)]
