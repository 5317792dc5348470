"""Corporate actions stored point in time, and bars read adjusted by the actions known at `as_of`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import msgspec
import numpy as np
import pytest

from market_data import db
from market_data.adjustment import Adjustment
from market_data.bar_reads import BarRead, ReadRefused, read_bars
from market_data.corporate_actions import (
    ActionKind,
    CorporateAction,
    UnknownSecurity,
    known_actions,
    record_actions,
)
from market_data.ingest.pit_write import write_bars
from market_data.notifications import ACTION_CHANNEL, ActionNotification
from market_data.providers.synthetic import SyntheticProvider
from market_data.providers.synthetic_history import synthetic_actions
from market_data.records import Interval
from market_data.securities import security_of
from market_data.timeframes import Align, parse_timeframe
from tests.corporate_actions_data import AAPL_DIVIDEND, AAPL_SPLIT, NOW

SPLIT, DIVIDEND = AAPL_SPLIT, AAPL_DIVIDEND


async def _store_aapl_daily(conn, start: datetime, end: datetime) -> datetime:
    bars = SyntheticProvider().bars_for("AAPL", "XNAS", Interval.D1, start, end, NOW)
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    return await conn.fetchval("SELECT max(as_of) FROM bars")


async def _read(conn, adjustment: Adjustment, as_of: datetime, start: datetime, end: datetime, interval="1d"):
    sec = await security_of(conn, "AAPL", None)
    assert sec is not None
    tf = parse_timeframe(interval)
    read = BarRead(
        symbol="AAPL",
        exchange_mic="XNAS",
        timeframe=tf,
        align=Align.SESSION,
        base=Interval.D1 if interval == "1d" else Interval.M1,
        start=start,
        end=end,
        as_of=as_of,
        adjustment=adjustment,
        security_id=sec.security_id,
    )
    return await read_bars(conn, read, 1000)


def test_the_synthetic_raw_series_drops_at_a_split_and_stays_deterministic() -> None:
    p = SyntheticProvider()
    bars = p.bars_for(
        "AAPL", "XNAS", Interval.D1, datetime(2020, 8, 27, tzinfo=UTC), datetime(2020, 9, 2, tzinfo=UTC), NOW
    )
    before, after = bars[1], bars[2]  # Friday 08-28, Monday 08-31
    assert (before.ts.date(), after.ts.date()) == (date(2020, 8, 28), date(2020, 8, 31))
    assert 3.5 < before.close / after.open < 4.5
    assert 2.5 < after.volume / before.volume < 6
    again = SyntheticProvider().bars_for(
        "AAPL", "XNAS", Interval.D1, datetime(2020, 8, 27, tzinfo=UTC), datetime(2020, 9, 2, tzinfo=UTC), NOW
    )
    assert again == bars
    # a symbol without splits keeps its continuous path
    msft = p.bars_for(
        "MSFT", "XNAS", Interval.D1, datetime(2020, 8, 28, tzinfo=UTC), datetime(2020, 9, 1, tzinfo=UTC), NOW
    )
    assert 0.8 < msft[0].close / msft[1].open < 1.25


def test_the_synthetic_history_carries_the_real_events() -> None:
    actions = {(a.symbol, a.kind, a.ex_date): a for a in synthetic_actions("synthetic")}
    assert actions[("AAPL", ActionKind.SPLIT, date(2020, 8, 31))].ratio == 4
    assert actions[("NVDA", ActionKind.SPLIT, date(2024, 6, 10))].ratio == 10
    assert actions[("TSLA", ActionKind.SPLIT, date(2022, 8, 25))].ratio == 3
    change = actions[("META", ActionKind.TICKER_CHANGE, date(2022, 6, 9))]
    assert (change.old_ticker, change.new_ticker) == ("FB", "META")
    assert sum(1 for s, k, _ in actions if (s, k) == ("AAPL", ActionKind.CASH_DIVIDEND)) >= 20


async def test_an_action_is_stored_once_and_a_revision_or_cancellation_is_a_new_version(conn) -> None:
    t1, t2, t3 = NOW, NOW + timedelta(days=1), NOW + timedelta(days=2)
    assert len(await record_actions(conn, [SPLIT, DIVIDEND], t1)) == 2
    assert await record_actions(conn, [SPLIT, DIVIDEND], t2) == []  # re-delivered as known
    revised = msgspec.structs.replace(DIVIDEND, amount=0.83)
    assert len(await record_actions(conn, [revised], t2)) == 1
    assert len(await record_actions(conn, [SPLIT.cancellation()], t3)) == 1
    assert await conn.fetchval("SELECT count(*) FROM corporate_actions") == 4
    sec = await security_of(conn, "AAPL", None)
    assert sec is not None
    at_t1 = await known_actions(conn, [sec.security_id], t1)
    assert [(a.action.kind, a.action.amount) for a in at_t1] == [
        (ActionKind.CASH_DIVIDEND, 0.82),
        (ActionKind.SPLIT, None),
    ]
    at_t2 = await known_actions(conn, [sec.security_id], t2)
    assert [a.action.amount for a in at_t2] == [0.83, None]
    at_t3 = await known_actions(conn, [sec.security_id], t3)
    assert [a.action.kind for a in at_t3] == [ActionKind.CASH_DIVIDEND]  # the split was cancelled
    assert len(await known_actions(conn, [sec.security_id], t3, with_cancelled=True)) == 2


async def test_an_action_of_an_unknown_ticker_stores_nothing(conn) -> None:
    bogus = msgspec.structs.replace(SPLIT, symbol="NOSUCHCO")
    with pytest.raises(UnknownSecurity):
        await record_actions(conn, [SPLIT, bogus], NOW)
    assert await conn.fetchval("SELECT count(*) FROM corporate_actions") == 0


async def test_a_learned_action_is_notified(md_dsn, conn) -> None:
    got: list[str] = []
    listener = await db.connect(md_dsn)
    try:
        await listener.add_listener(ACTION_CHANNEL, lambda *args: got.append(args[3]))
        await record_actions(conn, [SPLIT], NOW)
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    note = msgspec.json.decode(got[0], type=ActionNotification)
    assert (note.symbol, note.kind, note.ex_date, note.split_to) == ("AAPL", "split", "2020-08-31", 4.0)
    assert json.loads(got[0])["type"] == "corporate_action"


async def test_aapl_split_adjusted_around_2020_08_31_divides_prices_by_4_and_multiplies_volume(conn) -> None:
    start, end = datetime(2020, 8, 24, tzinfo=UTC), datetime(2020, 9, 5, tzinfo=UTC)
    stored = await _store_aapl_daily(conn, start, end)
    await record_actions(conn, [SPLIT], stored)
    raw = (await _read(conn, Adjustment.RAW, stored, start, end)).bars
    page = await _read(conn, Adjustment.SPLIT, stored, start, end)
    adj = page.bars
    before = raw.ts < np.datetime64("2020-08-31").astype("datetime64[ns]").astype(np.int64)
    assert before.sum() == 5 and (~before).sum() == 5
    np.testing.assert_allclose(adj.close[before], raw.close[before] / 4)
    np.testing.assert_allclose(adj.open[before], raw.open[before] / 4)
    np.testing.assert_allclose(adj.volume[before], raw.volume[before] * 4)
    np.testing.assert_array_equal(adj.close[~before], raw.close[~before])
    # continuous across the split: the adjusted Friday close is near Monday's open
    last, first = np.nonzero(before)[0][-1], np.nonzero(~before)[0][0]
    assert abs(adj.close[last] / adj.open[first] - 1) < 0.1
    assert abs(raw.close[last] / raw.open[first] - 1) > 2
    assert page.adjustment is not None and [a.split_ratio for a in page.adjustment.actions] == [4.0]
    assert page.adjustment.id.startswith("adj-")


async def test_a_dividend_factor_applies_before_its_ex_date(conn) -> None:
    start, end = datetime(2020, 8, 3, tzinfo=UTC), datetime(2020, 8, 12, tzinfo=UTC)
    stored = await _store_aapl_daily(conn, start, end)
    await record_actions(conn, [DIVIDEND], stored)
    raw = (await _read(conn, Adjustment.RAW, stored, start, end)).bars
    page = await _read(conn, Adjustment.DIVIDEND, stored, start, end)
    ts = [str(np.datetime64(int(t), "ns"))[:10] for t in raw.ts]
    prev_close = raw.close[ts.index("2020-08-06")]
    factor = 1 - 0.82 / prev_close
    assert page.adjustment is not None
    (applied,) = page.adjustment.actions
    assert applied.reference_close == prev_close
    assert applied.price_factor == pytest.approx(factor)
    before = np.array([t < "2020-08-07" for t in ts])
    np.testing.assert_allclose(page.bars.close[before], raw.close[before] * factor)
    np.testing.assert_array_equal(page.bars.close[~before], raw.close[~before])
    np.testing.assert_array_equal(page.bars.volume, raw.volume)


async def test_an_action_learned_later_changes_reads_as_of_after_it_and_not_before(conn) -> None:
    start, end = datetime(2020, 8, 24, tzinfo=UTC), datetime(2020, 9, 5, tzinfo=UTC)
    stored = await _store_aapl_daily(conn, start, end)
    learned = stored + timedelta(hours=1)
    await record_actions(conn, [SPLIT], learned)
    raw = (await _read(conn, Adjustment.RAW, stored, start, end)).bars
    earlier = await _read(conn, Adjustment.ALL, learned - timedelta(seconds=1), start, end)
    later = await _read(conn, Adjustment.ALL, learned, start, end)
    np.testing.assert_array_equal(earlier.bars.close, raw.close)
    assert earlier.adjustment is not None and earlier.adjustment.actions == []
    assert later.adjustment is not None and len(later.adjustment.actions) == 1
    assert later.bars.close[0] == pytest.approx(raw.close[0] / 4)
    assert earlier.adjustment.id != later.adjustment.id


async def test_a_cancelled_action_is_applied_only_while_it_stood(conn) -> None:
    start, end = datetime(2020, 8, 24, tzinfo=UTC), datetime(2020, 9, 5, tzinfo=UTC)
    stored = await _store_aapl_daily(conn, start, end)
    await record_actions(conn, [SPLIT], stored)
    cancelled_at = stored + timedelta(hours=1)
    await record_actions(conn, [SPLIT.cancellation()], cancelled_at)
    raw = (await _read(conn, Adjustment.RAW, stored, start, end)).bars
    standing = await _read(conn, Adjustment.SPLIT, stored, start, end)
    after = await _read(conn, Adjustment.SPLIT, cancelled_at, start, end)
    assert standing.bars.close[0] == pytest.approx(raw.close[0] / 4)
    np.testing.assert_array_equal(after.bars.close, raw.close)


async def test_built_bars_are_made_of_adjusted_base_bars(conn) -> None:
    day = datetime(2020, 8, 28, 13, 30, tzinfo=UTC)
    bars = SyntheticProvider().bars_for("AAPL", "XNAS", Interval.M1, day, day + timedelta(hours=7), NOW)
    await write_bars(conn, bars, policy_version=1, advance_cursors=False)
    stored = await conn.fetchval("SELECT max(as_of) FROM bars")
    await record_actions(conn, [SPLIT], stored)
    span = (datetime(2020, 8, 28, tzinfo=UTC), datetime(2020, 8, 29, tzinfo=UTC))
    raw = (await _read(conn, Adjustment.RAW, stored, *span, interval="1h")).bars
    adj = (await _read(conn, Adjustment.SPLIT, stored, *span, interval="1h")).bars
    assert len(raw) == 7
    np.testing.assert_allclose(adj.high, raw.high / 4)
    np.testing.assert_allclose(adj.volume, raw.volume * 4)


async def test_an_adjusted_read_of_a_symbol_without_a_security_is_refused(conn) -> None:
    read = BarRead(
        symbol="ZZZZ",
        exchange_mic="XNAS",
        timeframe=parse_timeframe("1d"),
        align=Align.SESSION,
        base=Interval.D1,
        start=datetime(2020, 1, 1, tzinfo=UTC),
        end=datetime(2020, 2, 1, tzinfo=UTC),
        as_of=NOW,
        adjustment=Adjustment.SPLIT,
    )
    with pytest.raises(ReadRefused) as info:
        await read_bars(conn, read, 10)
    assert info.value.parameter == "adjustment"


async def test_a_sync_stores_the_providers_history_once_and_a_rerun_stores_nothing(conn) -> None:
    from market_data.corporate_action_sync import (
        HISTORY_START,
        ActionSyncRefused,
        ActionSyncRequest,
        sync_corporate_actions,
    )
    from market_data.policy import load_policy_file
    from market_data.registry import ProviderRegistry
    from market_data.settings import get_settings

    policy = load_policy_file(get_settings().policy_file).policy
    registry = ProviderRegistry(policy, adapters={"synthetic": SyntheticProvider()})
    first = await sync_corporate_actions(conn, registry, ActionSyncRequest(), NOW)
    assert first.start == HISTORY_START and first.errors == {} and first.unknown == []
    assert first.stored == len(synthetic_actions("synthetic")) == first.fetched["synthetic"]
    again = await sync_corporate_actions(conn, registry, ActionSyncRequest(start=HISTORY_START), NOW)
    assert again.stored == 0 and again.fetched == first.fetched
    later = await sync_corporate_actions(conn, registry, ActionSyncRequest(), NOW)
    assert later.start == NOW.date() - timedelta(days=30)  # the history is stored: the recent window
    sec = await security_of(conn, "FB", date(2022, 6, 1))
    assert sec is not None and sec.storage_symbol == "META"
    with pytest.raises(ActionSyncRefused, match="symbols"):
        await sync_corporate_actions(conn, registry, ActionSyncRequest(symbols=["BTC-USD"]), NOW)
    with pytest.raises(ActionSyncRefused, match="end"):
        await sync_corporate_actions(
            conn, registry, ActionSyncRequest(start=date(2020, 1, 2), end=date(2020, 1, 1)), NOW
        )


async def test_a_second_provider_reporting_alike_stores_nothing_and_more_detail_is_a_version(conn) -> None:
    bare = msgspec.structs.replace(DIVIDEND, provider="yahoo", record_date=None, pay_date=None)
    assert len(await record_actions(conn, [bare], NOW)) == 1
    assert await record_actions(conn, [msgspec.structs.replace(bare, provider="finnhub")], NOW) == []
    assert len(await record_actions(conn, [DIVIDEND], NOW + timedelta(seconds=1))) == 1  # adds the dates
    assert await record_actions(conn, [bare], NOW + timedelta(seconds=2)) == []  # says less, not otherwise


def test_the_sql_column_lists_name_every_field_of_an_action() -> None:
    from market_data import corporate_actions as ca

    assert ca._A_VALUES == ", ".join("a." + c for c in ca._VALUE_COLUMNS)
    stated = {f.name for f in msgspec.structs.fields(CorporateAction)} - {"symbol", "kind", "ex_date"}
    assert set(ca._VALUE_COLUMNS) == stated


async def test_a_dividend_without_the_close_of_the_session_before_it_is_listed_not_applied(conn) -> None:
    start, end = datetime(2020, 8, 3, tzinfo=UTC), datetime(2020, 8, 12, tzinfo=UTC)
    stored = await _store_aapl_daily(conn, start, end)
    later = msgspec.structs.replace(DIVIDEND, ex_date=date(2021, 2, 5), amount=0.205)
    await record_actions(conn, [later], stored)
    raw = (await _read(conn, Adjustment.RAW, stored, start, end)).bars
    page = await _read(conn, Adjustment.DIVIDEND, stored, start, end)
    assert page.adjustment is not None
    (listed,) = page.adjustment.actions
    assert (listed.reference_close, listed.price_factor) == (None, 1.0)
    np.testing.assert_array_equal(page.bars.close, raw.close)


async def test_a_rename_the_master_knows_only_by_the_old_ticker_is_stored_on_that_security(conn) -> None:
    from market_data.records import Tier
    from market_data.universe import UniverseEntry, upsert_universe

    await upsert_universe(conn, [UniverseEntry(symbol="OLDCOQ", exchange_mic="XNAS", tier=Tier.T2)])
    try:
        rename = CorporateAction(
            symbol="NEWCOQ",
            kind=ActionKind.TICKER_CHANGE,
            ex_date=date(2024, 3, 12),
            provider="alpaca",
            old_ticker="OLDCOQ",
            new_ticker="NEWCOQ",
        )
        (stored,) = await record_actions(conn, [rename], NOW)
        new = await security_of(conn, "NEWCOQ", date(2024, 6, 1))
        old = await security_of(conn, "OLDCOQ", date(2024, 1, 2))
        assert new is not None and old == new and new.security_id == stored.security_id
        assert new.storage_symbol == "OLDCOQ"  # the universe symbol its bars are stored under
    finally:
        sid = await conn.fetchval("SELECT security_id FROM securities WHERE storage_symbol = 'OLDCOQ'")
        await conn.execute("DELETE FROM corporate_actions WHERE security_id = $1", sid)
        await conn.execute("DELETE FROM security_tickers WHERE security_id = $1", sid)
        await conn.execute("DELETE FROM securities WHERE security_id = $1", sid)
        await conn.execute("DELETE FROM symbol_universe WHERE symbol = 'OLDCOQ'")
