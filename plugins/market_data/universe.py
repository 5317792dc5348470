"""The symbol universe: which symbols we keep, on which exchange, in which tier.

Crypto pairs are written BASE-QUOTE (`BTC-USD`): unreserved characters in URLs (RFC 3986), so
they need no escaping in paths, and Yahoo's own form. Their row says `asset_class = crypto`
and the 24/7 exchange code (`calendar.CRYPTO_MIC`), which tells them apart from equity
tickers; each provider maps the pair to its vendor's form.
"""

from __future__ import annotations

import csv
from pathlib import Path

import asyncpg
import msgspec

from market_data import db
from market_data.calendar import CRYPTO_MIC, exchange_calendar
from market_data.records import MIC, Symbol, Tier
from market_data.securities import ensure_securities


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


CRYPTO = "crypto"
"""The asset class of crypto pairs: exactly the symbols on `CRYPTO_MIC`."""


def _check_asset_class(entry: UniverseEntry) -> None:
    if (entry.asset_class == CRYPTO) != (entry.exchange_mic == CRYPTO_MIC):
        raise ValueError(
            f"asset_class: crypto pairs and only they trade on {CRYPTO_MIC} (24/7), got "
            f"{entry.symbol} {entry.asset_class} on {entry.exchange_mic}"
        )


def load_seed(path: Path) -> list[UniverseEntry]:
    """Read a universe CSV (symbol, exchange_mic, tier, asset_class, currency, name)."""
    entries: list[UniverseEntry] = []
    with path.open(newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            try:
                entry = msgspec.convert({k: v for k, v in row.items() if v not in (None, "")}, UniverseEntry)
                exchange_calendar(entry.exchange_mic)
                _check_asset_class(entry)
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


class TierState(msgspec.Struct, frozen=True, kw_only=True):
    """What the scheduler needs to know about a tier's active symbols."""

    exchanges: tuple[str, ...]
    """Exchange MICs of its active symbols."""
    covered: bool
    """Whether any of them has an ingestion cursor (a sweep has stored bars of the tier)."""


_TIER_STATES = """
SELECT u.tier, array_agg(DISTINCT u.exchange_mic) AS mics,
       bool_or(EXISTS (SELECT 1 FROM ingestion_cursors c WHERE c.symbol = u.symbol)) AS covered
FROM symbol_universe u WHERE u.active GROUP BY u.tier"""


def active_tiers_blocking(dsn: str) -> dict[str, TierState]:
    """tier -> its active symbols' exchanges and coverage, for the scheduler (which cannot await)."""
    with db.connect_blocking(dsn) as conn, conn.cursor() as cur:
        cur.execute(_TIER_STATES)
        return {
            tier: TierState(exchanges=tuple(sorted(mics)), covered=bool(covered))
            for tier, mics, covered in cur.fetchall()
        }


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
            asset_class=CRYPTO if exchange_mic == CRYPTO_MIC else "equity",
            name=f"Generated {i}",
            currency="USD",
        )
        for i in range(1, count + 1)
    ]


async def upsert_universe(conn: asyncpg.Connection, entries: list[UniverseEntry]) -> int:
    """Insert or update entries, each with its security (`securities.ensure_securities`);
    returns how many rows were written."""
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
    await ensure_securities(conn, [(e.symbol, e.exchange_mic, e.name) for e in entries])
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
