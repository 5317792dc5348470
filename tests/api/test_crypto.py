"""Crypto pairs end to end: the sweep path stores them across midnight on a weekend, a vendor's
correction becomes a second version, and every endpoint and the WebSocket serve them like equities.

The sweep runs as md_sweep_t0's tasks do (`plan_sweep`, `run_sweep_batch`) over the default
policy, with the synthetic provider on a controlled clock that corrects every bar 45 s after
it ends (`revision_rate = 1`), so which version each run sees is exact.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.stocks import history
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.ingest.sweep import SweepResult, plan_sweep, run_sweep_batch
from market_data.policy import LoadedPolicy, parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Tier
from market_data.registry import ProviderRegistry
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import connect, live_server, recv_until, subscribe

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
EVERY_BAR_CORRECTED = re.sub(r"^revision_rate = .*$", "revision_rate = 1.0", DEFAULT, count=1, flags=re.M)
assert EVERY_BAR_CORRECTED != DEFAULT
LOADED = LoadedPolicy(
    version=1, policy=parse_policy(EVERY_BAR_CORRECTED), body=EVERY_BAR_CORRECTED, source="test"
)

MIDNIGHT = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
"""Sunday 00:00 UTC: US, London and Tokyo closed since Friday."""
FIRST_RUN = MIDNIGHT + timedelta(minutes=1)
SECOND_RUN = MIDNIGHT + timedelta(minutes=2)
LAG = timedelta(seconds=10)
"""How long after its data interval ends each run's provider call happens."""


async def sweep_t0(conn: asyncpg.Connection, now: datetime) -> SweepResult:
    """One md_sweep_t0 run whose window ends at `now`, its provider called `LAG` later."""
    provider = SyntheticProvider(
        "synthetic", LOADED.policy.providers["synthetic"].faults, clock=lambda: now + LAG
    )
    registry = ProviderRegistry(LOADED.policy, {"synthetic": provider}, retry_wait=lambda _s: 0.0)
    total = SweepResult(tier=Tier.T0, policy_version=1)
    for batch in await plan_sweep(conn, LOADED, Tier.T0, now):
        done = await run_sweep_batch(conn, LOADED.policy, batch, registry)
        total.bars_inserted += done.bars_inserted
        total.bars_received += done.bars_received
        total.gaps_found += done.gaps_found
    return total


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def when(text: str) -> datetime:
    """A time as the WebSocket payloads write it (Postgres's ISO 8601)."""
    return datetime.fromisoformat(text)


async def test_a_weekend_midnight_sweep_stores_the_pairs_and_a_correction_as_a_second_version(conn) -> None:
    first = await sweep_t0(conn, FIRST_RUN)
    # every pair: Saturday (its last completed UTC day, 1440 bars) and Sunday 00:00; every
    # equity: Friday's session (a closed market still gets its last completed session)
    pairs = {r[0] for r in await conn.fetch("SELECT symbol FROM symbol_universe WHERE exchange_mic = 'C247'")}
    per_symbol = dict(await conn.fetch("SELECT symbol, count(*) FROM bars GROUP BY 1"))
    assert {s: n for s, n in per_symbol.items() if s in pairs} == {s: 1441 for s in pairs}
    assert per_symbol["AAPL"] == 390 and len(per_symbol) == 23
    assert first.gaps_found == 0  # no hole at midnight or over the weekend

    second = await sweep_t0(conn, SECOND_RUN)
    # the re-read window: 00:00 again (corrected since its first delivery) and 00:01 (new), per pair
    assert (second.bars_received, second.bars_inserted, second.gaps_found) == (16, 16, 0)
    versions = await conn.fetch(
        "SELECT as_of, close, volume FROM bars WHERE symbol = 'BTC-USD' AND ts = $1 ORDER BY as_of", MIDNIGHT
    )
    assert len(versions) == 2 and versions[1]["volume"] > versions[0]["volume"]

    # the same window delivered again: nothing changed, nothing stored
    again = await sweep_t0(conn, SECOND_RUN)
    assert (again.bars_received, again.bars_inserted) == (16, 0)


@pytest.fixture
async def swept(conn) -> asyncpg.Connection:
    """Both runs done (the second corrects 00:00 of every pair) and a BTC-USD quote."""
    await sweep_t0(conn, FIRST_RUN)
    await sweep_t0(conn, SECOND_RUN)
    provider = SyntheticProvider("synthetic")
    await write_quotes(conn, [provider.quote_at("BTC-USD", "C247", SECOND_RUN)], policy_version=1)
    return conn


async def test_history_reads_across_midnight_with_fractional_volumes(client: AsyncTestClient, swept) -> None:
    r = await client.get(
        "/stocks/btc-usd/history",
        params={"interval": "1m", "start": "2026-11-21T23:58:00Z", "end": "2026-11-22T00:02:00Z"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "BTC-USD"
    assert [b["ts"] for b in body["bars"]] == [
        "2026-11-21T23:58:00Z",
        "2026-11-21T23:59:00Z",
        "2026-11-22T00:00:00Z",
        "2026-11-22T00:01:00Z",
    ]
    assert all(isinstance(b["volume"], float) and not b["volume"].is_integer() for b in body["bars"])


async def test_an_as_of_between_the_two_versions_reads_the_first(client: AsyncTestClient, swept) -> None:
    r = await client.get("/stocks/BTC-USD/versions", params={"ts": iso(MIDNIGHT)})
    assert r.status_code == 200, r.text
    first, second = r.json()["versions"]
    assert first["as_of"] < second["as_of"] and first["volume"] < second["volume"]
    between = (
        datetime.fromisoformat(first["as_of"])
        + (datetime.fromisoformat(second["as_of"]) - datetime.fromisoformat(first["as_of"])) / 2
    )
    window = {"interval": "1m", "start": iso(MIDNIGHT), "end": iso(MIDNIGHT + timedelta(minutes=1))}
    then = (
        await client.get("/stocks/BTC-USD/history", params={**window, "as_of": between.isoformat()})
    ).json()
    now = (await client.get("/stocks/BTC-USD/history", params=window)).json()
    assert [(b["volume"], b["as_of"]) for b in then["bars"]] == [(first["volume"], first["as_of"])]
    assert [(b["volume"], b["as_of"]) for b in now["bars"]] == [(second["volume"], second["as_of"])]


async def test_price_intraday_bars_and_snapshots_serve_a_pair(
    client: AsyncTestClient, swept, monkeypatch
) -> None:
    price = (await client.get("/stocks/BTC-USD/price")).json()
    assert (price["exchange_mic"], price["market_open"], price["source"]) == ("C247", True, "quote")

    monkeypatch.setattr(history, "utcnow", lambda: SECOND_RUN + timedelta(seconds=30))
    day = (await client.get("/stocks/BTC-USD/intraday")).json()
    assert (day["session_open"], day["session_close"]) == ("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z")
    assert day["market_open"] is True and [b["ts"] for b in day["bars"]] == [iso(MIDNIGHT), iso(FIRST_RUN)]

    many = (
        await client.get(
            "/stocks/bars",
            params={
                "symbols": "BTC-USD,ETH-USD",
                "interval": "1m",
                "start": iso(MIDNIGHT),
                "end": iso(SECOND_RUN),
            },
        )
    ).json()
    assert {s: len(b) for s, b in many["bars"].items()} == {"BTC-USD": 2, "ETH-USD": 2}

    snap = (await client.get("/stocks/snapshots", params={"symbols": "BTC-USD"})).json()["snapshots"][
        "BTC-USD"
    ]
    assert snap["exchange_mic"] == "C247" and snap["minute_bar"]["ts"] == iso(FIRST_RUN)
    quote = snap["latest_quote"]
    assert not float(quote["bid_size"]).is_integer() and not float(quote["ask_size"]).is_integer()


async def test_csv_keeps_fractional_volumes_and_whole_equity_volumes(client: AsyncTestClient, swept) -> None:
    r = await client.get(
        "/stocks/BTC-USD/history",
        params={"interval": "1m", "start": iso(MIDNIGHT), "end": iso(SECOND_RUN), "format": "csv"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["ts"] for row in rows] == [iso(MIDNIGHT), iso(FIRST_RUN)]
    assert all("." in row["volume"] for row in rows)

    # an equity's volume looks as it did before volumes could be fractional: 1205461, not 1205461.0
    await write_bars(swept, session_bars("MSFT", minutes=1), policy_version=1, advance_cursors=True)
    params = {"interval": "1m", "start": "2026-11-23T14:30:00Z", "end": "2026-11-23T14:31:00Z"}
    as_json = (await client.get("/stocks/MSFT/history", params=params)).json()["bars"][0]["volume"]
    as_csv = next(
        csv.DictReader(
            io.StringIO((await client.get("/stocks/MSFT/history", params={**params, "format": "csv"})).text)
        )
    )
    assert isinstance(as_json, int) and as_csv["volume"] == str(as_json)


async def test_the_websocket_gets_the_correction_flagged_in_the_delivery_that_brings_the_next_minute(
    conn,
) -> None:
    await sweep_t0(conn, FIRST_RUN)
    first_as_of = await conn.fetchval("SELECT as_of FROM bars WHERE symbol = 'BTC-USD' AND ts = $1", MIDNIGHT)
    async with live_server() as server:
        ws = await connect(server)
        _, snapshot = await subscribe(ws, bars=["BTC-USD"])
        (entry,) = snapshot["bars"]
        assert (when(entry["ts"]), entry["version"], entry["revision"]) == (MIDNIGHT, 1, False)

        await sweep_t0(conn, SECOND_RUN)

        correction = await recv_until(ws, "bar")
        newest = await recv_until(ws, "bar")
        assert (
            correction["symbol"],
            when(correction["ts"]),
            correction["revision"],
            correction["version"],
        ) == (
            "BTC-USD",
            MIDNIGHT,
            True,
            2,
        )
        assert when(correction["previous_as_of"]) == first_as_of
        assert (when(newest["ts"]), newest["revision"], newest["version"], newest["previous_as_of"]) == (
            FIRST_RUN,
            False,
            1,
            None,
        )
        assert not float(newest["volume"]).is_integer()

        # a new subscriber's snapshot shows the newest bar; a corrected bar would say so
        late = await connect(server)
        _, snap = await subscribe(late, bars=["BTC-USD"])
        assert [(when(b["ts"]), b["version"]) for b in snap["bars"]] == [(FIRST_RUN, 1)]
        for client in (ws, late):
            await client.close()


def test_the_default_policy_corrects_a_share_of_bars_and_rereads_two_minutes() -> None:
    policy = parse_policy(DEFAULT)
    faults = policy.providers["synthetic"].faults
    assert faults is not None and 0 < faults.revision_rate < 0.2 and faults.revision_delay.seconds == 45
    assert policy.tiers[Tier.T0].revision_window.seconds == 120
