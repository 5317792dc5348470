"""Point-in-time write path: re-delivery adds nothing, changes add versions, cursors move with bars."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import msgspec

from market_data import db
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.notifications import (
    BAR_CHANNEL,
    DERIVED_FIELDS,
    QUOTE_CHANNEL,
    BarNotification,
    QuoteNotification,
    payload_fields,
)
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Quote

MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def session_bars(symbol: str = "AAPL", minutes: int = 390):
    p = SyntheticProvider()
    return p.bars_for(symbol, "XNYS", Interval.M1, MON_OPEN, MON_OPEN + timedelta(minutes=minutes), LATER)


async def test_new_bars_are_stored_and_identical_redelivery_adds_nothing(conn) -> None:
    bars = session_bars()
    first = await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    assert (first.received, first.inserted) == (390, 390)
    again = await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    assert (again.received, again.inserted, again.unchanged) == (390, 0, 390)
    assert await conn.fetchval("SELECT count(*) FROM bars") == 390


async def test_a_changed_bar_adds_a_version_with_a_later_as_of(conn) -> None:
    bars = session_bars(minutes=10)
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    changed = msgspec.structs.replace(bars[3], close=bars[3].close + 0.5, provider="other")
    result = await write_bars(conn, [changed, *bars[4:]], policy_version=2, advance_cursors=True)
    assert result.inserted == 1
    versions = await conn.fetch(
        """SELECT close, as_of, provider, policy_version FROM bars
           WHERE symbol = 'AAPL' AND ts = $1 ORDER BY as_of""",
        bars[3].ts,
    )
    assert [v["close"] for v in versions] == [bars[3].close, bars[3].close + 0.5]
    assert versions[1]["as_of"] > versions[0]["as_of"]
    assert versions[1]["policy_version"] == 2
    # the point-in-time view before the change still sees the first version
    as_of_first = versions[0]["as_of"]
    seen = await conn.fetchval(
        """SELECT close FROM bars WHERE symbol='AAPL' AND interval='1m' AND ts=$1 AND as_of <= $2
           ORDER BY as_of DESC LIMIT 1""",
        bars[3].ts,
        as_of_first,
    )
    assert seen == bars[3].close
    # re-delivering the original values now is a change back: another version
    back = await write_bars(conn, [bars[3]], policy_version=2, advance_cursors=True)
    assert back.inserted == 1


async def test_duplicates_inside_one_delivery_count_once(conn) -> None:
    bars = session_bars(minutes=5)
    result = await write_bars(conn, bars + bars, policy_version=1, advance_cursors=False)
    assert result.inserted == 5


async def test_cursors_advance_with_the_bars_and_never_go_back(conn) -> None:
    bars = session_bars(minutes=60)
    await write_bars(conn, bars[:30], policy_version=1, advance_cursors=True)
    assert await conn.fetchval("SELECT last_ts FROM ingestion_cursors WHERE symbol='AAPL'") == bars[29].ts
    await write_bars(conn, bars[30:], policy_version=1, advance_cursors=True)
    assert await conn.fetchval("SELECT last_ts FROM ingestion_cursors WHERE symbol='AAPL'") == bars[59].ts
    await write_bars(conn, bars[:10], policy_version=1, advance_cursors=True)  # an old range again
    assert await conn.fetchval("SELECT last_ts FROM ingestion_cursors WHERE symbol='AAPL'") == bars[59].ts


async def test_backfill_writes_leave_cursors_alone(conn) -> None:
    await write_bars(conn, session_bars(minutes=10), policy_version=1, advance_cursors=False)
    assert await conn.fetchval("SELECT count(*) FROM ingestion_cursors") == 0


async def test_concurrent_writers_of_the_same_new_bars_store_one_version(md_dsn, conn) -> None:
    bars = session_bars(minutes=120)
    conns = [await db.connect(md_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(write_bars(c, bars, policy_version=1, advance_cursors=True) for c in conns)
        )
    finally:
        for c in conns:
            await c.close()
    assert sum(r.inserted for r in results) == 120
    assert await conn.fetchval("SELECT count(*) FROM bars") == 120


async def test_a_failed_write_leaves_no_partial_rows_or_cursor(conn) -> None:
    bars = session_bars(minutes=10)
    bad = msgspec.structs.replace(bars[5], volume=-1)  # violates CHECK (volume >= 0)
    try:
        await write_bars(conn, [*bars[:5], bad, *bars[6:]], policy_version=1, advance_cursors=True)
    except Exception as exc:
        assert "volume" in str(exc)
    else:
        raise AssertionError("a bar with negative volume was accepted")
    assert await conn.fetchval("SELECT count(*) FROM bars") == 0
    assert await conn.fetchval("SELECT count(*) FROM ingestion_cursors") == 0


async def test_writes_notify_listeners_with_the_latest_bar_per_symbol(md_dsn, conn) -> None:
    listener = await db.connect(md_dsn)
    received: list[dict] = []
    await listener.add_listener(BAR_CHANNEL, lambda *a: received.append(json.loads(a[3])))
    await listener.add_listener(QUOTE_CHANNEL, lambda *a: received.append(json.loads(a[3])))
    try:
        bars = session_bars("AAPL", 5) + session_bars("MSFT", 7)
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)
        quote = Quote(symbol="AAPL", ts=LATER, provider="synthetic", last=101.0, bid=100.9, ask=101.1)
        await write_quotes(conn, [quote], policy_version=1)
        await write_quotes(conn, [quote], policy_version=1)  # re-delivered: no second notification
        for _ in range(50):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    bar_msgs = sorted((m for m in received if m["type"] == "bar"), key=lambda m: m["symbol"])
    assert [(m["symbol"], m["close"]) for m in bar_msgs] == [
        ("AAPL", bars[4].close),
        ("MSFT", bars[-1].close),
    ]
    assert [m["symbol"] for m in received if m["type"] == "quote"] == ["AAPL"]


async def test_every_write_path_notifies_the_payload_fields_and_nothing_else(md_dsn, conn) -> None:
    listener = await db.connect(md_dsn)
    raw: list[str] = []
    await listener.add_listener(BAR_CHANNEL, lambda *a: raw.append(a[3]))
    await listener.add_listener(QUOTE_CHANNEL, lambda *a: raw.append(a[3]))
    try:
        bars = session_bars("AAPL", 5)
        await write_bars(conn, bars, policy_version=1, advance_cursors=True)  # runs: COPYed straight in
        changed = msgspec.structs.replace(bars[-1], close=bars[-1].close + 1.0)
        await write_bars(conn, [changed], policy_version=1, advance_cursors=True)  # staged, compared
        shuffled = session_bars("MSFT", 3)[::-1]
        await write_bars(conn, shuffled, policy_version=1, advance_cursors=True)  # staged, all new
        quote = Quote(symbol="AAPL", ts=LATER, provider="synthetic", last=101.0, bid_size=3)
        await write_quotes(conn, [quote], policy_version=1)
        for _ in range(50):
            if len(raw) >= 4:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert len(raw) == 4
    bar_keys = {"type", *payload_fields("bar"), *DERIVED_FIELDS["bar"], "notified_at"}
    quote_keys = {"type", *payload_fields("quote"), "notified_at"}
    decoded = []
    for text in raw:
        keys = set(json.loads(text))
        assert keys in (bar_keys, quote_keys), keys
        decoded.append(msgspec.json.decode(text, type=BarNotification | QuoteNotification))
    assert [(type(m).__name__, m.symbol) for m in decoded] == [
        ("BarNotification", "AAPL"),
        ("BarNotification", "AAPL"),
        ("BarNotification", "MSFT"),
        ("QuoteNotification", "AAPL"),
    ]
    assert all(m.notified_at is not None for m in decoded)
    assert isinstance(decoded[1], BarNotification) and decoded[1].close == changed.close
    # the compared write stored a correction of a bar the direct COPY stored first
    versions = [(m.version, m.revision, m.previous_as_of is not None) for m in decoded[:3]]
    assert versions == [(1, False, False), (2, True, True), (1, False, False)]


async def _notified_bars(md_dsn: str, conn, writes) -> list[BarNotification]:
    """The bar notifications of `writes` (a list of bar lists, written one after the other)."""
    listener = await db.connect(md_dsn)
    raw: list[str] = []
    await listener.add_listener(BAR_CHANNEL, lambda *a: raw.append(a[3]))
    try:
        expected = 0
        for bars in writes:
            await write_bars(conn, bars, policy_version=1, advance_cursors=True)
        await asyncio.sleep(0.2)
        for _ in range(50):
            if len(raw) == expected:
                break
            expected = len(raw)
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    return [msgspec.json.decode(text, type=BarNotification) for text in raw]


async def test_a_revision_delivered_with_a_newer_bar_is_notified_flagged_with_its_version(
    md_dsn, conn
) -> None:
    bars = session_bars("AAPL", 6)
    await write_bars(conn, bars[:5], policy_version=1, advance_cursors=True)
    first_as_of = await conn.fetchval("SELECT as_of FROM bars WHERE ts = $1", bars[3].ts)
    late_trades = msgspec.structs.replace(bars[3], volume=bars[3].volume + 250, close=bars[3].close + 0.01)

    # a sweep's re-read: two stored bars again (one corrected) and the newest minute
    notified = await _notified_bars(md_dsn, conn, [[late_trades, bars[4], bars[5]]])

    assert [(m.ts, m.version, m.revision) for m in notified] == [
        (bars[3].ts, 2, True),
        (bars[5].ts, 1, False),
    ]
    revision = notified[0]
    assert revision.previous_as_of == first_as_of and revision.as_of > first_as_of
    assert (revision.close, revision.volume) == (late_trades.close, late_trades.volume)
    assert notified[1].previous_as_of is None


async def test_a_second_correction_is_version_three_and_identical_redelivery_notifies_nothing(
    md_dsn, conn
) -> None:
    bars = session_bars("AAPL", 3)
    once = msgspec.structs.replace(bars[1], close=bars[1].close + 0.01)
    twice = msgspec.structs.replace(bars[1], close=bars[1].close + 0.02)
    notified = await _notified_bars(md_dsn, conn, [bars, [bars[0], once, bars[2]], [twice], [twice]])
    assert [(m.ts, m.version) for m in notified] == [(bars[2].ts, 1), (bars[1].ts, 2), (bars[1].ts, 3)]
    assert await conn.fetchval("SELECT count(*) FROM bars WHERE ts = $1", bars[1].ts) == 3


async def test_fractional_volumes_and_sizes_are_stored_as_delivered(conn) -> None:
    p = SyntheticProvider()
    start = datetime(2026, 11, 21, 23, 58, tzinfo=UTC)  # a Saturday, across midnight
    bars = p.bars_for("BTC-USD", "C247", Interval.M1, start, start + timedelta(minutes=4), LATER)
    assert [b.ts.minute for b in bars] == [58, 59, 0, 1]
    assert all(not b.volume.is_integer() for b in bars)
    await write_bars(conn, bars, policy_version=1, advance_cursors=True)
    stored = await conn.fetch("SELECT volume FROM bars WHERE symbol = 'BTC-USD' ORDER BY ts")
    assert [r["volume"] for r in stored] == [b.volume for b in bars]
    quote = Quote(symbol="BTC-USD", ts=LATER, provider="synthetic", last=9.5, bid_size=0.3544, ask_size=3.252)
    await write_quotes(conn, [quote], policy_version=1)
    sizes = await conn.fetchrow("SELECT bid_size, ask_size FROM quotes WHERE symbol = 'BTC-USD'")
    assert (sizes["bid_size"], sizes["ask_size"]) == (0.3544, 3.252)


async def test_quotes_redelivered_are_ignored(conn) -> None:
    q = Quote(symbol="AAPL", ts=LATER, provider="synthetic", last=10.0)
    assert (await write_quotes(conn, [q, q], policy_version=1)).inserted == 1
    assert (await write_quotes(conn, [q], policy_version=1)).inserted == 0
