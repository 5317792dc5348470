"""GET /stocks/{symbol}/coverage: per session, expected, stored, confirmed-empty, missing and queued bars."""

from __future__ import annotations

from datetime import datetime, timedelta

from api.errors import BadParameter
from api.schemas import ResponseModel
from api.state import AppResources
from api.stocks.params import instant, parse_interval
from api.stocks.symbols import Listed, stored_intervals
from market_data.bar_reads import resolve_base
from market_data.coverage import RevisedBar, SessionCoverage, StateRange, session_coverage
from market_data.gaps import QueuedBackfill
from market_data.records import Interval
from market_data.timeframes import Align

DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN = {True: timedelta(days=93), False: timedelta(days=366)}
"""Widest [start, end) of one report: intraday intervals 93 days, daily 366."""


class CoverageTotals(ResponseModel, kw_only=True):
    expected: int
    stored: int
    confirmed_empty: int
    missing: int
    queued_for_backfill: int


class CoverageResponse(ResponseModel, kw_only=True):
    symbol: str
    exchange_mic: str
    interval: str
    """The interval asked for."""
    counted: str
    """The stored interval counted: `interval` itself, or the one it is built from."""
    start: datetime
    end: datetime
    totals: CoverageTotals
    sessions: list[SessionCoverage]
    """Sessions with an expected bar in [start, end), oldest first."""
    ranges: list[StateRange]
    """The expected bars not stored, as runs of adjacent bars of one session in one state
    (`missing`, `queued` for backfill, `confirmed_empty`), oldest first."""
    revised: list[RevisedBar]
    """Stored bars with more than one version (click one on /ui for them), oldest first."""
    revised_truncated: bool
    """More revised bars exist in [start, end) than `revised` lists (5000)."""
    backfills: list[QueuedBackfill]
    """The queued or running backfill jobs that overlap [start, end) (start, end, status,
    source), by start: the same jobs `queued_for_backfill` counts, readable without the ops token."""


async def coverage_report(
    resources: AppResources,
    listed: Listed,
    interval: str | None,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> CoverageResponse:
    """The report of one symbol over [start, end) (default: the 7 days before now)."""
    stored = (await stored_intervals(resources, [listed]))[listed.symbol]
    if interval is None:
        if not stored:
            raise BadParameter(f"interval: no interval is stored for {listed.symbol}", parameter="interval")
        counted = min(stored, key=lambda iv: iv.seconds)
        asked = counted.value
    else:
        timeframe = parse_interval(interval)
        counted = resolve_base(timeframe, Align.SESSION, stored, listed.symbol, listed.exchange_mic)
        asked = timeframe.value
    hi = instant(end, "end") if end is not None else now
    lo = instant(start, "start") if start is not None else hi - DEFAULT_SPAN
    if lo >= hi:
        raise BadParameter("end: must be after start", parameter="end")
    span = MAX_SPAN[counted is not Interval.D1]
    if hi - lo > span:
        raise BadParameter(
            f"start: a coverage report of {counted.value} bars covers at most {span.days} days",
            parameter="start",
        )
    report = await resources.reads.run(
        lambda db: session_coverage(db, listed.symbol, listed.exchange_mic, counted, lo, hi)
    )
    return CoverageResponse(
        symbol=listed.symbol,
        exchange_mic=listed.exchange_mic,
        interval=asked,
        counted=counted.value,
        start=lo,
        end=hi,
        totals=_totals(report.sessions),
        sessions=report.sessions,
        ranges=report.ranges,
        revised=report.revised,
        revised_truncated=report.revised_truncated,
        backfills=report.backfills,
    )


def _totals(sessions: list[SessionCoverage]) -> CoverageTotals:
    return CoverageTotals(
        expected=sum(s.expected for s in sessions),
        stored=sum(s.stored for s in sessions),
        confirmed_empty=sum(s.confirmed_empty for s in sessions),
        missing=sum(s.missing for s in sessions),
        queued_for_backfill=sum(s.queued_for_backfill for s in sessions),
    )
