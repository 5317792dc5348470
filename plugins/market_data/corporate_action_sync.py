"""Pulling corporate actions from every enabled provider that reports them (`md_corporate_actions`).

Each provider whose adapter declares `Capabilities.corporate_actions` (synthetic, Yahoo chart
events, Alpaca corporate actions, Finnhub splits) is asked, through the registry (its rate
limit, breaker and retries), for the actions of the active equities of each exchange it
serves, in [start, end]. Every report is stored as a version (`corporate_actions.
record_actions`): one a provider re-delivers unchanged, or a second provider reports alike,
stores nothing (the version names the provider that reported it first), so re-running a run
writes nothing new; a report that changes or adds a field is a new version. An action whose
ticker no security of the master had on its ex-date is counted (`unknown`), not stored.

The window of a scheduled run: the last `LOOKBACK` and the next `AHEAD` (announced actions);
while no action is stored yet, from `HISTORY_START` (a first run loads the history the
adjusted reads need).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec

from market_data.corporate_actions import CorporateAction, UnknownSecurity, record_actions
from market_data.providers.base import CorporateActionSource, Provider
from market_data.records import Symbol
from market_data.registry import AllProvidersFailed, ProviderRegistry

log = logging.getLogger(__name__)

CAPABILITY = "corporate_actions"
LOOKBACK = timedelta(days=30)
AHEAD = timedelta(days=90)
HISTORY_START = date(2000, 1, 1)
MAX_SYMBOLS = 500


class ActionSyncRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A manual pull: these symbols (default: every active equity) over [start, end] (ex-dates)."""

    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)] | None = None
    start: date | None = None
    end: date | None = None


class ActionSyncReport(msgspec.Struct, kw_only=True):
    start: date
    end: date
    fetched: dict[str, int] = {}
    """provider -> actions reported."""
    stored: int = 0
    """New versions stored (new, revised or cancelled actions)."""
    unknown: list[str] = []
    """Tickers of actions no security had on their ex-date (not stored)."""
    errors: dict[str, str] = {}
    """provider -> why a call failed."""


class ActionSyncRefused(ValueError):
    """A manual request that cannot run (names the field)."""


async def sync_window(conn: asyncpg.Connection, today: date, req: ActionSyncRequest) -> tuple[date, date]:
    """[start, end] of a run: as asked, else the default window (see the module docstring).

    Raises:
        ActionSyncRefused: `end` before `start`.
    """
    if req.start is not None:
        start = req.start
    elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM corporate_actions)"):
        start = today - LOOKBACK
    else:
        start = HISTORY_START
    end = req.end if req.end is not None else today + AHEAD
    if end < start:
        raise ActionSyncRefused(f"end: {end} is before start {start}")
    return start, end


_EQUITIES = """
SELECT exchange_mic, array_agg(symbol ORDER BY symbol) AS symbols FROM symbol_universe
WHERE active AND asset_class <> 'crypto' AND ($1::text[] IS NULL OR symbol = ANY($1::text[]))
GROUP BY exchange_mic ORDER BY exchange_mic"""


async def equities_by_exchange(conn: asyncpg.Connection, symbols: list[str] | None) -> dict[str, list[str]]:
    """exchange MIC -> the active equities (of `symbols` when given).

    Raises:
        ActionSyncRefused: a named symbol that is not an active equity of the universe.
    """
    rows = await conn.fetch(_EQUITIES, symbols)
    found = {r["exchange_mic"]: list(r["symbols"]) for r in rows}
    if symbols is not None:
        listed = {s for group in found.values() for s in group}
        if missing := [s for s in symbols if s not in listed]:
            raise ActionSyncRefused(f"symbols: not active equities of the universe: {', '.join(missing)}")
    return found


def _chunks(symbols: Sequence[str], size: int) -> list[list[str]]:
    return [list(symbols[i : i + size]) for i in range(0, len(symbols), max(1, size))]


async def _store(
    conn: asyncpg.Connection, actions: list[CorporateAction], now: datetime, report: ActionSyncReport
) -> None:
    for action in actions:
        try:
            report.stored += len(await record_actions(conn, [action], now))
        except UnknownSecurity:
            report.unknown.append(action.symbol)


async def sync_corporate_actions(
    conn: asyncpg.Connection,
    registry: ProviderRegistry,
    req: ActionSyncRequest,
    now: datetime,
) -> ActionSyncReport:
    """Pull and store the actions of every provider that reports them (see the module docstring).

    Raises:
        ActionSyncRefused: a bad manual request.
        AllProvidersFailed: no provider that reports actions answered any call.
    """
    start, end = await sync_window(conn, now.date(), req)
    report = ActionSyncReport(start=start, end=end)
    answered = 0
    for mic, symbols in (await equities_by_exchange(conn, req.symbols)).items():
        for name in registry.candidates(CAPABILITY, exchange=mic):
            adapter = registry.adapters[name]
            for chunk in _chunks(symbols, adapter.capabilities.max_symbols_per_request):

                async def call(
                    a: Provider, chunk: list[str] = chunk, mic: str = mic
                ) -> list[CorporateAction]:
                    assert isinstance(a, CorporateActionSource)
                    return await a.fetch_corporate_actions(chunk, mic, start, end)

                try:
                    outcome = await registry.call(CAPABILITY, [name], call, exchange=mic)
                except AllProvidersFailed as exc:
                    report.errors[name] = str(exc)
                    log.warning("corporate actions of %s on %s from %s failed: %s", chunk, mic, name, exc)
                    continue
                answered += 1
                report.fetched[name] = report.fetched.get(name, 0) + len(outcome.value)
                await _store(conn, outcome.value, now, report)
    if answered == 0 and report.errors:
        raise AllProvidersFailed(CAPABILITY, report.errors)
    return report
