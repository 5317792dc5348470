"""The symbol universe: which symbols we keep, on which exchange, in which tier."""

from __future__ import annotations

import csv
from pathlib import Path

import asyncpg
import msgspec

from market_data import db
from market_data.calendar import exchange_calendar
from market_data.records import MIC, Symbol, Tier


class UniverseEntry(msgspec.Struct, frozen=True, kw_only=True):
    symbol: Symbol
    exchange_mic: MIC
    tier: Tier
    asset_class: str = "equity"
    currency: str | None = None
    name: str | None = None
    active: bool = True


class UniverseError(ValueError):
    """A universe seed row that cannot be used."""


def load_seed(path: Path) -> list[UniverseEntry]:
    """Read a universe CSV (symbol, exchange_mic, tier, asset_class, currency, name)."""
    entries: list[UniverseEntry] = []
    with path.open(newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            try:
                entry = msgspec.convert({k: v for k, v in row.items() if v not in (None, "")}, UniverseEntry)
                exchange_calendar(entry.exchange_mic)
            except (msgspec.ValidationError, ValueError) as exc:
                raise UniverseError(f"{path.name}:{line_no}: {exc}") from exc
            entries.append(entry)
    return entries


def seed_exchanges(path: Path) -> dict[str, tuple[str, ...]]:
    """tier -> exchange MICs of its seed symbols, from the CSV alone (no calendars, no database:
    DAG files call this while they are parsed); empty when the file cannot be read."""
    found: dict[str, set[str]] = {}
    try:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                found.setdefault(row["tier"], set()).add(row["exchange_mic"])
    except OSError:
        return {}
    return {tier: tuple(sorted(mics)) for tier, mics in found.items()}


def active_exchanges_blocking(dsn: str) -> dict[str, tuple[str, ...]]:
    """tier -> exchange MICs of its active symbols, for the scheduler (which cannot await)."""
    with db.connect_blocking(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tier, array_agg(DISTINCT exchange_mic) FROM symbol_universe WHERE active GROUP BY tier"
        )
        return {tier: tuple(sorted(mics)) for tier, mics in cur.fetchall()}


def active_universe_blocking(dsn: str) -> dict[str, str]:
    """symbol -> tier of the active universe, for callers that cannot await (trigger-time checks)."""
    with db.connect_blocking(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT symbol, tier FROM symbol_universe WHERE active")
        return dict(cur.fetchall())


def generated_entries(
    count: int, tier: Tier, exchange_mic: str = "XNYS", prefix: str = "GEN"
) -> list[UniverseEntry]:
    """`count` made-up symbols (GEN00001, ...) for scale tests; the synthetic provider serves any symbol."""
    width = max(5, len(str(count)))
    return [
        UniverseEntry(
            symbol=f"{prefix}{i:0{width}d}",
            exchange_mic=exchange_mic,
            tier=tier,
            name=f"Generated {i}",
            currency="USD",
        )
        for i in range(1, count + 1)
    ]


async def upsert_universe(conn: asyncpg.Connection, entries: list[UniverseEntry]) -> int:
    """Insert or update entries; returns how many rows were written."""
    await conn.executemany(
        """INSERT INTO symbol_universe AS u (symbol, exchange_mic, tier, asset_class, currency, name, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (symbol) DO UPDATE SET
               exchange_mic = EXCLUDED.exchange_mic, tier = EXCLUDED.tier,
               asset_class = EXCLUDED.asset_class, currency = EXCLUDED.currency,
               name = EXCLUDED.name, active = EXCLUDED.active, updated_at = now()
           WHERE (u.exchange_mic, u.tier, u.asset_class, u.currency, u.name, u.active)
                 IS DISTINCT FROM (EXCLUDED.exchange_mic, EXCLUDED.tier, EXCLUDED.asset_class,
                                   EXCLUDED.currency, EXCLUDED.name, EXCLUDED.active)""",
        [
            (e.symbol, e.exchange_mic, e.tier.value, e.asset_class, e.currency, e.name, e.active)
            for e in entries
        ],
    )
    return len(entries)


async def active_symbols(conn: asyncpg.Connection, tier: Tier) -> list[UniverseEntry]:
    rows = await conn.fetch(
        """SELECT symbol, exchange_mic, tier, asset_class, currency, name
           FROM symbol_universe WHERE active AND tier = $1 ORDER BY symbol""",
        tier.value,
    )
    return [
        UniverseEntry(
            symbol=r["symbol"],
            exchange_mic=r["exchange_mic"],
            tier=Tier(r["tier"]),
            asset_class=r["asset_class"],
            currency=r["currency"],
            name=r["name"],
        )
        for r in rows
    ]
