"""What a bulk export of bars will read: its symbols, timeframe, range and `as_of`, checked up front.

Everything that could refuse an export is decided here, before the first byte is streamed:
symbols, timeframe (each symbol's stored interval to read or build it from), range, `as_of`
and the row cap. A refused export is a 400 naming the parameter, never a truncated file.

Reproducible: the plan depends only on the request and on what the store knew at `as_of`
(the intervals each symbol held bars of then, the policy version active then), so the same
request gives the same plan, and the same bytes, later.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime

import asyncpg
import msgspec

from api.errors import BadParameter
from api.state import AppResources
from api.stocks.params import OutputFormat, bar_range, instant, parse_interval
from api.stocks.symbols import Listed, bases_of, stored_intervals
from market_data import calendar
from market_data.adjustment import Adjustment, AdjustmentSet
from market_data.bar_fetch import settled_as_of
from market_data.bar_reads import MAX_BASE_BARS, BarRead, held_intervals, read_adjustment
from market_data.policy.store import version_active_at
from market_data.records import Interval
from market_data.securities import within_life
from market_data.timeframes import Align, Timeframe, Unit, bucket_grid_ns

MAX_EXPORT_ROWS = 5_000_000
"""Most bars one export may hold (all symbols together), as the exchange calendars expect them."""
PAGE_ROWS = 50_000
"""Bars read (and encoded as one CSV chunk or Parquet row group) at a time, per symbol."""
_PERIOD_DAYS = {Unit.DAY: 1, Unit.WEEK: 7, Unit.MONTH: 31}


class SymbolExport(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    exchange_mic: str
    base: Interval
    """The stored interval its bars are read (or built) from."""
    security_id: int | None = None
    listed_from: date | None = None
    delisted_on: date | None = None
    """The security's life: its bars are read only inside it (`securities.within_life`)."""
    adjustment: AdjustmentSet | None = None
    """The corporate actions applied to its bars (known at the export's `as_of`); None: raw."""


class ExportPlan(msgspec.Struct, frozen=True, kw_only=True):
    symbols: list[SymbolExport]
    timeframe: Timeframe
    align: Align
    start: datetime
    end: datetime
    as_of: datetime
    format: OutputFormat
    adjustment: Adjustment = Adjustment.RAW
    policy_version: int | None
    """The policy version active at `as_of`."""
    expected_rows: int
    """The bars the exchange calendars expect in the range, all symbols together (the cap's count)."""

    def read(self, s: SymbolExport, start: datetime, end: datetime) -> BarRead:
        """The read of one symbol's bars in [start, end) within its security's life, oldest first."""
        start, end = within_life(start, end, s.listed_from, s.delisted_on)
        return BarRead(
            symbol=s.symbol,
            exchange_mic=s.exchange_mic,
            timeframe=self.timeframe,
            align=self.align,
            base=s.base,
            start=start,
            end=end,
            as_of=self.as_of,
            adjustment=self.adjustment,
            security_id=s.security_id,
        )

    def windows(self, s: SymbolExport) -> list[tuple[datetime, datetime]]:
        """[start, end) cut where every PAGE_ROWS-th bar the calendar expects starts (stored reads)."""
        lo, hi = calendar.to_ns(self.start), calendar.to_ns(self.end)
        expected = calendar.expected_bar_starts_ns(s.exchange_mic, s.base, lo, hi)
        cuts = [lo, *(int(t) for t in expected[PAGE_ROWS::PAGE_ROWS]), hi]
        return [(calendar.to_datetime(a), calendar.to_datetime(b)) for a, b in itertools.pairwise(cuts)]

    def page_rows(self, base: Interval) -> int:
        """Bars per page: PAGE_ROWS, fewer when each is built from many base bars (MAX_BASE_BARS)."""
        if base.value == self.timeframe.value:
            return PAGE_ROWS
        span = (
            self.timeframe.minutes * 60
            if self.timeframe.is_intraday
            else _PERIOD_DAYS[self.timeframe.unit] * 86_400
        )
        per_bar = -(-span // base.seconds)
        return max(1, min(PAGE_ROWS, MAX_BASE_BARS // per_bar - 1))


async def export_as_of(resources: AppResources, as_of: datetime | None) -> datetime:
    """The export's `as_of`: the one asked for, or now; never later than what is settled.

    Raises:
        BadParameter: `as_of` is later than the newest instant every write is committed for.
    """
    settled = await settled_as_of(resources.db)
    settled = min(settled, resources.reads.newest_complete(settled))
    if as_of is None:
        return settled
    at = instant(as_of, "as_of")
    if at > settled:
        raise BadParameter(
            f"as_of: must not be later than {settled.isoformat()}, the newest instant every write "
            "is committed for (a later one could still change); leave it out for now",
            parameter="as_of",
        )
    return at


async def plan_export(
    resources: AppResources,
    listed: list[Listed],
    *,
    interval: str,
    align: Align,
    start: datetime | None,
    end: datetime | None,
    as_of: datetime | None,
    fmt: OutputFormat,
    adjustment: Adjustment = Adjustment.RAW,
) -> ExportPlan:
    """The plan of an export, or a 400 naming the parameter that stops it."""
    timeframe = parse_interval(interval)
    if start is None:
        raise BadParameter("start: required (an export covers [start, end))", parameter="start")
    at = await export_as_of(resources, as_of)
    lo, hi = bar_range(timeframe, start, end, at)
    assert lo is not None
    held = await resources.reads.run(lambda db: held_intervals(db, [x.symbol for x in listed], at), as_of=at)
    fallback = await stored_intervals(resources, [x for x in listed if not held.get(x.symbol)])
    # what each symbol held at as_of: a finer interval stored later does not change the export
    bases = bases_of(
        timeframe, align, listed, {x.symbol: held.get(x.symbol) or fallback[x.symbol] for x in listed}
    )
    symbols = [
        SymbolExport(
            symbol=x.symbol,
            exchange_mic=x.exchange_mic,
            base=bases[x.symbol],
            security_id=x.security_id,
            listed_from=x.listed_from,
            delisted_on=x.delisted_on,
        )
        for x in listed
    ]
    lo_ns, hi_ns = calendar.to_ns(lo), calendar.to_ns(hi)
    expected = sum(int(bucket_grid_ns(s.exchange_mic, timeframe, align, lo_ns, hi_ns).size) for s in symbols)
    if expected > MAX_EXPORT_ROWS:
        raise BadParameter(
            f"start: {len(symbols)} symbol(s) of {timeframe.value} bars over [start, end) are about "
            f"{expected} bars, more than the {MAX_EXPORT_ROWS} one export holds; narrow the range or "
            "split the symbols over several exports",
            parameter="start",
        )
    policy_version = await resources.reads.run(lambda db: version_active_at(db, at))
    plan = ExportPlan(
        symbols=symbols,
        timeframe=timeframe,
        align=align,
        start=lo,
        end=hi,
        as_of=at,
        format=fmt,
        adjustment=adjustment,
        policy_version=policy_version,
        expected_rows=expected,
    )
    if adjustment is Adjustment.RAW:
        return plan

    async def adjustments(db: asyncpg.Pool) -> list[AdjustmentSet | None]:
        return [await read_adjustment(db, plan.read(s, lo, hi)) for s in symbols]

    sets = await resources.reads.run(adjustments, as_of=at)
    return msgspec.structs.replace(
        plan, symbols=[msgspec.structs.replace(s, adjustment=a) for s, a in zip(symbols, sets, strict=True)]
    )
