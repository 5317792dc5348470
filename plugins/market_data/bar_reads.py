"""The read pipeline of bars: every endpoint and format reads bars through `read_bars`.

    fetch base bars known at `as_of`  ->  adjust  ->  aggregate  ->  completeness  ->  (encode)

1. fetch (`bar_fetch`): the stored bars of the base interval, the version of each known at the
   read's `as_of` (a point-in-time read builds from what was known then).
2. adjust (`adjust_base_bars`): corporate-action adjustment (`adjustment=raw|split|dividend|all`,
   `market_data.adjustment`) of the base bars by the actions known at `as_of`, before any
   aggregation, so a built bar is made of adjusted base bars. A raw read skips it.
3. aggregate (`aggregate.aggregate`): base bars into buckets of the timeframe
   (`timeframes.bucket_starts_ns`); a stored timeframe is read as stored and skips this.
4. completeness: the gap module's expected / stored / confirmed-empty (known at `as_of`) bars
   of each bucket; a bucket with a missing base bar gives an incomplete bar, and so does the
   bucket still running (its later base bars are not stored yet).

The caller encodes the result (`aggregate.Bars`, columns) as JSON, CSV or Parquet.

Bulk reads of a stored timeframe (`read_window`) take every bar of a window in one scan.

Pages: a read walks [start, end) from one end (`backward`: from `end`) and returns up to
`limit` bars and whether more follow. Built bars are selected by their bucket's start in
[start, end), each built whole; the buckets come from the calendar (`bucket_grid_ns`),
trimmed to where stored base bars exist, and a page reads only its buckets' base bars.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg
import msgspec
import numpy as np

from market_data import bar_fetch, calendar, gaps
from market_data.adjustment import Adjustment, AdjustmentSet, adjustment_set
from market_data.aggregate import Bars, aggregate, mark_missing
from market_data.policy.schema import Policy
from market_data.records import Interval, Tier
from market_data.timeframes import (
    Align,
    Timeframe,
    base_interval,
    base_range_ns,
    bucket_grid_ns,
    bucket_starts_ns,
    readable_timeframes,
)

MAX_BASE_BARS = 500_000
"""Most base bars one page may be built from (about five years of 1m bars)."""
FETCH_PARTS = 4
ROWS_PER_FETCH_PART = 25_000
"""A page's base bars are read in parts of about this many, up to FETCH_PARTS at once."""
_NO_LATER = datetime(9999, 1, 1, tzinfo=UTC)
_EXTENT_BEFORE = timedelta(days=2)
_EXTENT_AFTER = timedelta(days=32)
"""Base bars of a bucket that starts in [start, end) lie within these margins of the range."""


class ReadRefused(ValueError):
    """A read the service cannot answer as asked; `parameter` names what to change."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = f"{parameter}: {detail}"


class BarRead(msgspec.Struct, frozen=True, kw_only=True):
    """One read of one symbol's bars: what, from which stored interval, which range, as of when."""

    symbol: str
    exchange_mic: str
    timeframe: Timeframe
    align: Align
    base: Interval
    """The stored interval the bars come from (`timeframe` itself when read as stored)."""
    start: datetime
    """Bars whose `ts` is at or after this instant."""
    end: datetime
    """...and before this one."""
    as_of: datetime
    backward: bool = False
    """Walk from `end` towards `start` (newest first)."""
    adjustment: Adjustment = Adjustment.RAW
    security_id: int | None = None
    """The security `symbol` stores (needed by an adjusted read)."""

    @property
    def built(self) -> bool:
        return self.base.value != self.timeframe.value


class BarPage(NamedTuple):
    bars: Bars
    """Up to `limit` bars in walk order (newest first when the read walks backward)."""
    more: bool
    """More bars follow in walk order."""
    adjustment: AdjustmentSet | None = None
    """The actions applied (None: a raw read)."""


def resolve_base(
    timeframe: Timeframe, align: Align, stored: set[Interval], symbol: str, mic: str
) -> Interval:
    """The stored interval a read of `timeframe` comes from.

    Raises:
        ReadRefused: no stored interval of the symbol divides the timeframe (names `interval`).
    """
    base = base_interval(timeframe, align, stored, mic)
    if base is None:
        held = ", ".join(iv.value for iv in sorted(stored, key=lambda iv: iv.seconds)) or "none"
        how = "" if align is Align.SESSION or not timeframe.is_intraday else f" aligned to the {align.value}"
        raise ReadRefused(
            "interval",
            f"{symbol} stores {held} bars, which cannot build {timeframe.value} bars{how}; "
            f"it can be read at {readable_timeframes(stored, align, mic)}",
        )
    return base


def adjust_base_bars(bars: Bars, adjustment: AdjustmentSet | None) -> Bars:
    """Corporate-action adjustment of the base bars (none for a raw read)."""
    return bars if adjustment is None else adjustment.apply(bars)


async def read_adjustment(conn: asyncpg.Connection | asyncpg.Pool, read: BarRead) -> AdjustmentSet | None:
    """The actions an adjusted read applies; None for a raw read.

    Raises:
        ReadRefused: an adjusted read of a symbol without a security master entry (`adjustment`).
    """
    if read.adjustment is Adjustment.RAW:
        return None
    if read.security_id is None:
        raise ReadRefused(
            "adjustment",
            f"{read.symbol} has no security master entry, so no corporate actions: read it with "
            "adjustment=raw (or add it to the universe)",
        )
    return await adjustment_set(
        conn,
        security_id=read.security_id,
        symbol=read.symbol,
        interval=read.base,
        mode=read.adjustment,
        as_of=read.as_of,
    )


async def read_bars(conn: asyncpg.Connection | asyncpg.Pool, read: BarRead, limit: int) -> BarPage:
    """Up to `limit` bars of `read` from its walk end, and whether more follow.

    Raises:
        ReadRefused: the page would be built from more than MAX_BASE_BARS base bars, or an
            adjusted read of a symbol without a security.
    """
    adjustment = await read_adjustment(conn, read)
    page = await (_stored_page if not read.built else _built_page)(conn, read, limit, adjustment)
    return page._replace(adjustment=adjustment)


async def read_window(
    conn: asyncpg.Connection | asyncpg.Pool, read: BarRead, adjustment: AdjustmentSet | None = None
) -> Bars:
    """Every bar of a stored timeframe in [start, end) known at `as_of`, oldest first, adjusted
    by `adjustment` (the caller's `read_adjustment`, read once for all its windows).

    The bulk form of a stored read (exports): one scan in index order, the newest version of
    each bar kept in numpy, no sort and no limit, so the caller bounds the window. A built
    timeframe is read in pages (`read_bars`), which bound the base bars themselves.
    """
    if read.built:
        raise ValueError(f"{read.timeframe.value} is built from {read.base.value}: read it in pages")
    bars = await bar_fetch.range_versions(conn, read.symbol, read.base, read.start, read.end, read.as_of)
    return adjust_base_bars(bars, adjustment)


async def _stored_page(
    conn: asyncpg.Connection | asyncpg.Pool, read: BarRead, limit: int, adjustment: AdjustmentSet | None
) -> BarPage:
    if limit > MAX_BASE_BARS:
        raise ReadRefused("limit", f"at most {MAX_BASE_BARS} bars per request")
    bars = await bar_fetch.stored_page(
        conn, read.symbol, read.base, read.start, read.end, read.as_of, limit + 1, newest_first=read.backward
    )
    bars = adjust_base_bars(bars, adjustment)
    if len(bars) > limit:
        return BarPage(bars.take(slice(0, limit)), True)
    return BarPage(bars, False)


async def _bucket_grid(conn: asyncpg.Connection | asyncpg.Pool, read: BarRead) -> np.ndarray:
    """Starts of the buckets in [start, end), trimmed to the first and last with stored base bars."""
    extent = await bar_fetch.stored_extent(
        conn,
        read.symbol,
        read.base,
        read.start - _EXTENT_BEFORE,
        read.end + _EXTENT_AFTER,
        read.as_of,
    )
    if extent is None:
        return np.empty(0, dtype=np.int64)
    lo, hi = calendar.to_ns(read.start), calendar.to_ns(read.end)
    tf, mic = read.timeframe, read.exchange_mic
    first, last = bucket_starts_ns(
        mic, tf, read.align, read.base, np.array([calendar.to_ns(t) for t in extent])
    )
    return bucket_grid_ns(
        mic, tf, read.align, max(lo, int(first)), min(hi, int(last) + 1 if last >= 0 else hi)
    )


def build_bars(
    mic: str,
    timeframe: Timeframe,
    align: Align,
    base: Interval,
    rows: Bars,
    expected: np.ndarray,
    empty: gaps.EmptyRanges = (),
) -> Bars:
    """Bars of `timeframe` built from `base` bars `rows` (ascending), complete or not.

    `expected` are the base bar starts the calendar expects over the same range, `empty` the
    confirmed-empty ranges: a bucket with an expected base bar neither in `rows` nor confirmed
    empty is incomplete. A bucket without any row gives no bar.
    """
    built = aggregate(rows, bucket_starts_ns(mic, timeframe, align, base, rows.ts))
    states = gaps.bar_states(expected, rows.ts, empty)
    missing = bucket_starts_ns(mic, timeframe, align, base, expected[states.missing])
    return mark_missing(built, np.unique(missing))


async def _base_rows(
    conn: asyncpg.Connection | asyncpg.Pool, read: BarRead, buckets: np.ndarray, expected: int
) -> Bars:
    """The base bars of `buckets` known at the read's `as_of`, ascending.

    A long range is read in up to FETCH_PARTS parts at once, each on a connection of the pool:
    Postgres packs each part's rows in its own backend (README, Performance).
    """
    parts = min(FETCH_PARTS, buckets.size, -(-expected // ROWS_PER_FETCH_PART))
    if parts <= 1 or not isinstance(conn, asyncpg.Pool):
        parts = 1
    groups = np.array_split(buckets, parts)

    async def fetch(group: np.ndarray) -> Bars:
        lo, hi = base_range_ns(
            read.exchange_mic, read.timeframe, read.align, read.base, int(group[0]), int(group[-1])
        )
        return await bar_fetch.range_versions(
            conn, read.symbol, read.base, calendar.to_datetime(lo), calendar.to_datetime(hi), read.as_of
        )

    return Bars.concat(await asyncio.gather(*(fetch(g) for g in groups)))


async def _build(
    conn: asyncpg.Connection | asyncpg.Pool,
    read: BarRead,
    buckets: np.ndarray,
    span: tuple[int, int],
    expected: np.ndarray,
    adjustment: AdjustmentSet | None,
) -> Bars:
    """The built bars of `buckets` (ascending starts) from the store as known at the read's `as_of`.

    `span` is the buckets' base range (`base_range_ns`), `expected` the base bars it expects.
    """
    start, end = (calendar.to_datetime(t) for t in span)
    rows = adjust_base_bars(await _base_rows(conn, read, buckets, expected.size), adjustment)
    empty = await gaps.confirmed_empty_ranges(conn, [read.symbol], read.base, start, end, read.as_of)
    built = build_bars(
        read.exchange_mic, read.timeframe, read.align, read.base, rows, expected, empty.get(read.symbol, ())
    )
    return built.take((built.ts >= buckets[0]) & (built.ts <= buckets[-1]))


def _expected_base(read: BarRead, buckets: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
    """The base range of `buckets` (ascending) and the base bar starts the calendar expects in it."""
    lo, hi = base_range_ns(
        read.exchange_mic, read.timeframe, read.align, read.base, int(buckets[0]), int(buckets[-1])
    )
    return (lo, hi), calendar.expected_bar_starts_ns(read.exchange_mic, read.base, lo, hi)


async def _built_page(
    conn: asyncpg.Connection | asyncpg.Pool, read: BarRead, limit: int, adjustment: AdjustmentSet | None
) -> BarPage:
    grid = await _bucket_grid(conn, read)
    if read.backward:
        grid = grid[::-1]
    parts: list[Bars] = []
    have, pos, take = 0, 0, limit + 1
    while have <= limit and pos < grid.size:
        chunk = grid[pos : pos + take]
        if read.backward:
            chunk = chunk[::-1]
        span, expected = _expected_base(read, chunk)
        while expected.size > MAX_BASE_BARS:
            if chunk.size == 1 or (pos == 0 and chunk.size == min(limit + 1, grid.size)):
                fit = max(1, int(MAX_BASE_BARS * chunk.size / expected.size) - 1)
                raise ReadRefused(
                    "limit",
                    f"{limit} {read.timeframe.value} bars are built from {expected.size} {read.base.value} "
                    f"bars, more than the {MAX_BASE_BARS} one request reads; ask for fewer bars per page "
                    f"(about {fit} here)",
                )
            chunk = chunk[chunk.size // 2 :] if read.backward else chunk[: max(1, chunk.size // 2)]
            span, expected = _expected_base(read, chunk)
        bars = await _build(conn, read, chunk, span, expected, adjustment)
        parts.append(bars.reversed() if read.backward else bars)
        have += len(bars)
        pos += chunk.size
        take = max(limit + 1 - have, 2 * chunk.size)  # empty buckets (holes): look further each time
    bars = Bars.concat(parts)
    if len(bars) > limit:
        return BarPage(bars.take(slice(0, limit)), True)
    return BarPage(bars, False)


# The stored intervals that hold at least one bar of each symbol known at $3 (an index probe per pair).
_HELD_INTERVALS = """
SELECT s.symbol, ARRAY(
    SELECT iv FROM unnest($2::text[]) AS iv
    WHERE EXISTS (
        SELECT 1 FROM bars WHERE bars.symbol = s.symbol AND bars.interval = iv AND bars.as_of <= $3
    )
) AS held
FROM unnest($1::text[]) AS s(symbol)"""


async def held_intervals(
    conn: asyncpg.Connection | asyncpg.Pool, symbols: list[str], as_of: datetime | None = None
) -> dict[str, set[Interval]]:
    """The intervals with at least one stored bar (known at `as_of`, default: any), per symbol."""
    rows = await conn.fetch(_HELD_INTERVALS, symbols, [iv.value for iv in Interval], as_of or _NO_LATER)
    return {r["symbol"]: {Interval(v) for v in r["held"]} for r in rows}


def stored_for(policy: Policy, tier: str, held: set[Interval]) -> set[Interval]:
    """The intervals stored for a symbol: its tier's in the policy, and any the store holds for it."""
    tier_policy = policy.tiers.get(Tier(tier))
    return set(tier_policy.intervals if tier_policy is not None else ()) | held
