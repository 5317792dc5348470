"""SLO sampling: continuity (gap violation rate), freshness (ingestion lag), backfill queue.

`md_slo` calls `sample_slo` every few minutes; `/stats/slo` reads what it stored. Everything
below is measured in *trading time* with the exchange calendar (`market_data.calendar`):
nights, weekends, holidays, early closes and lunch breaks hold no expected bars, so they
never make a gap or a lag. Computations are numpy over int64 nanoseconds (UTC).

Definitions (one (tier, interval) pair of one run at instant `now`):

**Evaluated bars** of a symbol: the bars its exchange's calendar expects with
`window_start <= ts` whose bar has ended by `now` (`bar_end <= now`), minus bars inside a
confirmed-empty range (minutes without trades, confirmed by a provider: accounted for, never
a gap), and only up to the symbol's newest stored bar in the window (`ts <= newest`; the
bar its cursor points at, read from the bars themselves so only stored bars are judged). The
not-yet-ingested tail after the newest bar is freshness, which the lag measures; continuity
only judges what lies between bars we have. A symbol with no stored bar in the window has
nothing to judge (gap 0; the lag shows it).

**Window**: `[now - slo.window, now)`, reaching further back when needed so that it holds at
least the last `max(MIN_WINDOW_BARS, 2·ceil(multiplier) + 2)` expected bars of the exchange
(a 1h window holds no 1d bar, and 9:35 has only five 1m bars of today: the window then takes
the end of the previous session, in trading time).

**Largest gap** of a symbol: the longest run of consecutive evaluated bars that are not
stored, times the interval: `largest_gap_seconds = bars_in_run x interval.seconds`.
"Consecutive" is in the evaluated sequence, so a run continues across a night, a holiday or
a lunch break (those hold no bars) and across a confirmed-empty range (taken out, not
counted). A short bar (early close, the 15:30 1h bar) counts as one interval. Runs are
clipped to the window. Any stored version of a bar counts as stored.

**Violation**: `largest_gap_seconds > gap_threshold_multiplier x interval.seconds`
(default 2x: two missing bars in a row are tolerated, three are not).
**Violation rate**: violating sampled symbols / sampled symbols (0 when none is sampled).

**Sampling**: per (tier, interval), up to `slo.sample_size` of the tier's active symbols,
chosen with numpy's PCG64 from a seed (default: `now` in whole seconds, so a re-run of the
same run samples the same symbols while successive runs rotate through the universe), mixed
with the tier and interval; all of them when the tier is smaller.

**Lag** of a symbol (freshness): the expected bars that have ended by `now` and start after
the symbol's newest cursor (`ingestion_cursors.last_ts`, newest across providers, capped at
`now`), times the interval, i.e. how much trading time of completed bars is not ingested
yet. It stays constant while the market is closed (no bar completes) and is 0 when caught
up. Lags reach back at most `LAG_HORIZON`. Per (tier, interval): `lag_seconds` = worst
active symbol with a cursor, `lag_p95_seconds` = its 95th percentile (an observed value);
symbols without a cursor are counted in `uncovered_symbols` instead. Confirmed-empty ranges
are not taken out of the lag (they come from backfills of older ranges).

**Backfill queue** per tier: jobs `queued` or `running`, and the age of the oldest one
(`now - created_at`, 0 when none); the same values on every interval row of the tier.

A run stores one `slo_samples` row per (tier, interval) of the policy, at `sampled_at =
now`, replacing rows stored earlier for the same instant (re-running a run rewrites it).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

import asyncpg
import msgspec
import numpy as np

from market_data import calendar
from market_data.metrics import TaskMetrics
from market_data.policy.schema import Policy, SloPolicy
from market_data.records import Interval, ensure_utc

log = logging.getLogger(__name__)

MIN_WINDOW_BARS = 20
"""The window holds at least this many expected bars of the exchange (see the module doc)."""
LAG_HORIZON = timedelta(days=30)
"""Lags count bars at most this far back (an older cursor reports this much)."""
_WINDOW_LOOKBACK = timedelta(days=14)
"""Calendar time searched for the window's minimum bars, beyond bars x interval x 2."""
_NS = 1_000_000_000

NsArray = np.ndarray
"""int64 nanoseconds since the epoch (UTC), sorted ascending."""
EmptyRanges = Sequence[tuple[int, int]]
"""Confirmed-empty ranges [start_ns, end_ns)."""


class GapStat(msgspec.Struct, frozen=True, kw_only=True):
    """The largest gap of one symbol in one window."""

    bars: int
    """Missing bars in the longest run."""
    seconds: float
    """bars x interval seconds."""
    start_ns: int | None = None
    """Start of the first missing bar of that run (None without a gap)."""
    evaluated: int = 0
    """Expected bars judged (after the cut at the newest stored bar and confirmed-empty ranges)."""


NO_GAP = GapStat(bars=0, seconds=0.0)


class SloSample(msgspec.Struct, frozen=True, kw_only=True):
    """One (tier, interval) row of `slo_samples`."""

    sampled_at: datetime
    tier: str
    interval: str
    sampled_symbols: int
    violating_symbols: int
    violation_rate: float
    max_gap_seconds: float | None
    """Largest gap among the sampled symbols (None when none was sampled)."""
    lag_seconds: float | None
    """Worst active symbol's lag (None when no active symbol has a cursor)."""
    lag_p95_seconds: float | None
    queue_depth: int | None
    """Backfill jobs queued or running for the tier."""
    oldest_age_seconds: float | None
    active_symbols: int | None
    uncovered_symbols: int | None
    """Active symbols without a cursor for the interval (left out of the lag)."""
    policy_version: int | None
    id: int | None = None


LagStatus = Literal["ok", "warn", "critical", "unknown"]


class SloAssessment(msgspec.Struct, frozen=True, kw_only=True):
    """How a sample compares with the SLO thresholds of a policy."""

    gap_threshold_seconds: float
    continuity_met: bool
    """violation_rate <= slo.violation_rate_max."""
    lag_status: LagStatus
    """ok / warn (> lag_warn) / critical (> lag_critical) / unknown (no cursor at all).
    Both thresholds are at least one interval: a bar cannot be fetched before it ends."""
    met: bool
    """continuity_met and lag_status is ok or warn."""


# -- pure computations ------------------------------------------------------------------------
def gap_threshold_seconds(interval: Interval, multiplier: float) -> float:
    """Longest gap that does not violate: multiplier x interval."""
    return float(multiplier) * interval.seconds


def window_min_bars(multiplier: float) -> int:
    """Bars a window holds at least: room for a violating run with stored bars around it."""
    return max(MIN_WINDOW_BARS, 2 * math.ceil(multiplier) + 2)


def in_ranges(values: NsArray, ranges: EmptyRanges) -> np.ndarray:
    """Boolean mask: which values fall inside any [start, end) of `ranges` (may overlap)."""
    if not len(ranges) or values.size == 0:
        return np.zeros(values.size, dtype=bool)
    r = np.asarray(sorted(ranges), dtype=np.int64).reshape(-1, 2)
    reach = np.maximum.accumulate(r[:, 1])  # furthest end of the ranges starting at or before
    idx = np.searchsorted(r[:, 0], values, side="right") - 1
    return (idx >= 0) & (values < reach[np.clip(idx, 0, None)])


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, first index) of the longest run of True in `mask`; (0, -1) without one."""
    if mask.size == 0 or not mask.any():
        return 0, -1
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(ends[k] - starts[k]), int(starts[k])


def expected_complete_ns(mic: str, interval: Interval, start_ns: int, now_ns: int) -> NsArray:
    """Expected bar starts with start_ns <= ts whose bar has ended by now_ns."""
    starts = calendar.expected_bar_starts_ns(mic, interval, start_ns, now_ns)
    if starts.size == 0:
        return starts
    return starts[calendar.bar_end_ns(mic, interval, starts) <= now_ns]


def window_start_ns(mic: str, interval: Interval, now_ns: int, window: timedelta, min_bars: int) -> int:
    """Start of the evaluation window: now - window, or earlier to hold `min_bars` expected bars."""
    start = now_ns - int(window.total_seconds() * _NS)
    lookback = max(window, interval.delta * min_bars * 2) + _WINDOW_LOOKBACK
    recent = expected_complete_ns(mic, interval, now_ns - int(lookback.total_seconds() * _NS), now_ns)
    if recent.size == 0:
        return start
    return min(start, int(recent[-min(min_bars, recent.size)]))


def largest_gap_in(
    expected: NsArray,
    present: NsArray,
    interval: Interval,
    empty: EmptyRanges = (),
    *,
    until_ns: int | None = None,
) -> GapStat:
    """The largest gap among `expected` bar starts (already windowed) given the stored `present`.

    Args:
        expected: sorted expected bar starts of the window (ended by now).
        present: stored bar starts (any order, duplicates allowed).
        empty: confirmed-empty ranges; their bars are taken out before runs are counted.
        until_ns: judge bars up to this start (inclusive); default the newest stored bar.
    """
    if until_ns is None:
        if present.size == 0:
            return NO_GAP
        until_ns = int(present.max())
    judged = expected[expected <= until_ns]
    judged = judged[~in_ranges(judged, empty)]
    if judged.size == 0:
        return NO_GAP
    missing = ~np.isin(judged, present)
    bars, first = longest_run(missing)
    return GapStat(
        bars=bars,
        seconds=float(bars * interval.seconds),
        start_ns=int(judged[first]) if bars else None,
        evaluated=int(judged.size),
    )


def largest_gap(
    mic: str,
    interval: Interval,
    present: NsArray,
    *,
    now_ns: int,
    window: timedelta,
    empty: EmptyRanges = (),
    multiplier: float = 2.0,
) -> GapStat:
    """The largest gap of one symbol of exchange `mic` in the window ending at now_ns."""
    start = window_start_ns(mic, interval, now_ns, window, window_min_bars(multiplier))
    expected = expected_complete_ns(mic, interval, start, now_ns)
    return largest_gap_in(expected, present[present >= start], interval, empty)


def largest_gap_seconds(
    mic: str,
    interval: Interval,
    present: NsArray,
    *,
    now_ns: int,
    window: timedelta,
    empty: EmptyRanges = (),
    multiplier: float = 2.0,
) -> float:
    """Seconds of the largest gap (see the module doc); 0.0 without one."""
    return largest_gap(
        mic, interval, present, now_ns=now_ns, window=window, empty=empty, multiplier=multiplier
    ).seconds


def gaps_by_symbol(
    exchanges: Mapping[str, str],
    interval: Interval,
    present: Mapping[str, NsArray],
    *,
    now_ns: int,
    window: timedelta,
    multiplier: float,
    empty: Mapping[str, EmptyRanges] | None = None,
) -> dict[str, GapStat]:
    """Largest gap of each symbol of `exchanges` (symbol -> MIC); calendars computed once per MIC."""
    min_bars = window_min_bars(multiplier)
    per_mic: dict[str, tuple[int, NsArray]] = {}
    out: dict[str, GapStat] = {}
    none = np.empty(0, dtype=np.int64)
    for symbol, mic in exchanges.items():
        if mic not in per_mic:
            start = window_start_ns(mic, interval, now_ns, window, min_bars)
            per_mic[mic] = (start, expected_complete_ns(mic, interval, start, now_ns))
        start, expected = per_mic[mic]
        stored = present.get(symbol, none)
        out[symbol] = largest_gap_in(
            expected, stored[stored >= start], interval, (empty or {}).get(symbol, ())
        )
    return out


def violation_count(gap_seconds: Iterable[float], threshold_seconds: float) -> tuple[int, int, float]:
    """(violating, sampled, rate) for the largest gaps of the sampled symbols."""
    gaps = np.fromiter(gap_seconds, dtype=np.float64)
    if gaps.size == 0:
        return 0, 0, 0.0
    violating = int(np.count_nonzero(gaps > threshold_seconds))
    return violating, int(gaps.size), violating / gaps.size


def lag_seconds(mic: str, interval: Interval, cursors_ns: NsArray, now_ns: int) -> np.ndarray:
    """Per-symbol lag (float seconds) of symbols of one exchange whose newest cursors are given.

    Lag = expected bars ended by now that start after the cursor, x interval (trading time:
    it does not grow while the market is closed).
    """
    cursors = np.minimum(np.asarray(cursors_ns, dtype=np.int64), now_ns)
    if cursors.size == 0:
        return np.empty(0, dtype=np.float64)
    lo = max(int(cursors.min()) + 1, now_ns - int(LAG_HORIZON.total_seconds() * _NS))
    if lo >= now_ns:
        return np.zeros(cursors.size, dtype=np.float64)
    expected = expected_complete_ns(mic, interval, lo, now_ns)
    behind = expected.size - np.searchsorted(expected, cursors, side="right")
    return behind.astype(np.float64) * interval.seconds


def sample_seed(base: int, tier: str, interval: str) -> int:
    """The sampling seed of one (tier, interval), derived from a run's base seed."""
    digest = hashlib.blake2b(f"{base}|{tier}|{interval}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sample_symbols(symbols: Iterable[str], k: int, seed: int) -> list[str]:
    """Up to k of `symbols`, reproducible for a seed whatever the input order; sorted."""
    pool = sorted(set(symbols))
    if len(pool) <= k:
        return pool
    rng = np.random.Generator(np.random.PCG64(seed))
    picked = rng.choice(len(pool), size=k, replace=False)
    return sorted(pool[i] for i in picked.tolist())


def assess(sample: SloSample, slo: SloPolicy) -> SloAssessment:
    """Compare one sample with the SLO thresholds (see SloAssessment)."""
    interval = Interval(sample.interval)
    continuity = sample.violation_rate <= slo.violation_rate_max
    status: LagStatus
    if sample.lag_seconds is None:
        status = "unknown"
    elif sample.lag_seconds > max(slo.lag_critical.seconds, interval.seconds):
        status = "critical"
    elif sample.lag_seconds > max(slo.lag_warn.seconds, interval.seconds):
        status = "warn"
    else:
        status = "ok"
    return SloAssessment(
        gap_threshold_seconds=gap_threshold_seconds(interval, slo.gap_threshold_multiplier),
        continuity_met=continuity,
        lag_status=status,
        met=continuity and status in ("ok", "warn"),
    )


def measurement_instant(data_interval_end: datetime | None, wall: datetime) -> datetime:
    """The instant a run measures: its data interval's end, never in the future."""
    if data_interval_end is None:
        return ensure_utc(wall)
    return ensure_utc(min(ensure_utc(data_interval_end), ensure_utc(wall)))


# -- SQL --------------------------------------------------------------------------------------
_ACTIVE_WITH_CURSORS = """
SELECT u.symbol, u.exchange_mic, c.interval,
       (extract(epoch FROM max(c.last_ts)) * 1000000)::bigint AS last_us
FROM symbol_universe u
LEFT JOIN ingestion_cursors c ON c.symbol = u.symbol AND c.interval = ANY($2::text[])
WHERE u.tier = $1 AND u.active
GROUP BY 1, 2, 3"""

# Epoch microseconds: bigint arrays decode far faster than timestamptz ones.
_BAR_TIMES = """
SELECT symbol, array_agg(DISTINCT (extract(epoch FROM ts) * 1000000)::bigint) AS us
FROM bars
WHERE symbol = ANY($1::text[]) AND interval = $2 AND ts >= $3 AND ts < $4
GROUP BY symbol"""

_EMPTY_RANGES = """
SELECT symbol, start_ts, end_ts FROM confirmed_empty_ranges
WHERE symbol = ANY($1::text[]) AND interval = $2 AND end_ts > $3 AND start_ts < $4"""

_QUEUE = """
SELECT tier, count(*) AS depth, min(created_at) AS oldest
FROM backfill_jobs WHERE status IN ('queued', 'running') GROUP BY tier"""

_COLUMNS = (
    "sampled_at",
    "tier",
    "interval",
    "sampled_symbols",
    "violating_symbols",
    "violation_rate",
    "max_gap_seconds",
    "lag_seconds",
    "lag_p95_seconds",
    "queue_depth",
    "oldest_age_seconds",
    "active_symbols",
    "uncovered_symbols",
    "policy_version",
)

_INSERT = f"""
INSERT INTO slo_samples ({", ".join(_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})"""

_SELECT = f"SELECT id, {', '.join(_COLUMNS)} FROM slo_samples"

_RECENT = f"""{_SELECT} WHERE ($1::timestamptz IS NULL OR sampled_at >= $1)
ORDER BY sampled_at DESC, id DESC LIMIT $2"""

_LATEST = f"""SELECT DISTINCT ON (tier, interval) id, {", ".join(_COLUMNS)} FROM slo_samples
ORDER BY tier, interval, sampled_at DESC, id DESC"""


Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
"""What the queries run on: a task's connection or the API's pool."""


def _us_to_ns(values: Sequence[int]) -> NsArray:
    return np.asarray(values, dtype=np.int64) * 1000


async def _symbol_data(
    conn: asyncpg.Connection, symbols: list[str], interval: Interval, lo: datetime, now: datetime
) -> tuple[dict[str, NsArray], dict[str, list[tuple[int, int]]]]:
    rows = await conn.fetch(_BAR_TIMES, symbols, interval.value, lo, now)
    present = {r["symbol"]: np.sort(_us_to_ns(r["us"])) for r in rows}
    empty: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in await conn.fetch(_EMPTY_RANGES, symbols, interval.value, lo, now):
        empty[r["symbol"]].append((calendar.to_ns(r["start_ts"]), calendar.to_ns(r["end_ts"])))
    return present, empty


def _tier_lag(
    exchanges: Mapping[str, str], cursors: Mapping[str, int], interval: Interval, now_ns: int
) -> tuple[float | None, float | None, str | None]:
    """(worst, p95, worst symbol) over symbols with a cursor."""
    by_mic: dict[str, list[str]] = defaultdict(list)
    for symbol in sorted(cursors):
        by_mic[exchanges[symbol]].append(symbol)
    lags: list[np.ndarray] = []
    names: list[str] = []
    for mic, symbols in by_mic.items():
        ns = np.array([cursors[s] for s in symbols], dtype=np.int64)
        lags.append(lag_seconds(mic, interval, ns, now_ns))
        names.extend(symbols)
    if not names:
        return None, None, None
    all_lags = np.concatenate(lags)
    worst = int(np.argmax(all_lags))
    p95 = float(np.percentile(all_lags, 95, method="higher"))
    return float(all_lags[worst]), p95, names[worst]


async def sample_slo(
    conn: asyncpg.Connection,
    policy: Policy,
    now: datetime,
    *,
    seed: int | None = None,
    policy_version: int | None = None,
    store: bool = True,
) -> list[SloSample]:
    """Measure every (tier, interval) of the policy at `now` and store one row each.

    Args:
        seed: base seed of the symbol samples (default: `now` in whole seconds).
        policy_version: recorded with every row (the version the run used).
        store: False measures without writing (what-if checks).

    Returns:
        The rows, ordered by tier then interval as the policy lists them.
    """
    now = ensure_utc(now)
    now_ns = calendar.to_ns(now)
    slo = policy.slo
    base_seed = int(now.timestamp()) if seed is None else seed
    queue = {r["tier"]: (int(r["depth"]), r["oldest"]) for r in await conn.fetch(_QUEUE)}
    samples: list[SloSample] = []
    for tier in sorted(policy.tiers):
        tp = policy.tiers[tier]
        intervals = list(dict.fromkeys(tp.intervals))
        exchanges: dict[str, str] = {}
        cursors: dict[Interval, dict[str, int]] = defaultdict(dict)  # newest cursor, epoch ns
        for r in await conn.fetch(_ACTIVE_WITH_CURSORS, tier.value, [iv.value for iv in intervals]):
            exchanges[r["symbol"]] = r["exchange_mic"]
            if r["interval"] is not None:
                cursors[Interval(r["interval"])][r["symbol"]] = int(r["last_us"]) * 1000
        depth, oldest = queue.get(tier.value, (0, None))
        oldest_age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        for interval in intervals:
            picked = sample_symbols(exchanges, slo.sample_size, sample_seed(base_seed, tier, interval))
            gaps: dict[str, GapStat] = {}
            if picked:
                sample_mics = {s: exchanges[s] for s in picked}
                min_bars = window_min_bars(slo.gap_threshold_multiplier)
                lo_ns = min(
                    window_start_ns(mic, interval, now_ns, slo.window.delta, min_bars)
                    for mic in set(sample_mics.values())
                )
                present, empty = await _symbol_data(conn, picked, interval, calendar.to_datetime(lo_ns), now)
                gaps = gaps_by_symbol(
                    sample_mics,
                    interval,
                    present,
                    now_ns=now_ns,
                    window=slo.window.delta,
                    multiplier=slo.gap_threshold_multiplier,
                    empty=empty,
                )
            threshold = gap_threshold_seconds(interval, slo.gap_threshold_multiplier)
            violating, sampled, rate = violation_count((g.seconds for g in gaps.values()), threshold)
            lag, lag_p95, laggard = _tier_lag(exchanges, cursors[interval], interval, now_ns)
            sample = SloSample(
                sampled_at=now,
                tier=tier.value,
                interval=interval.value,
                sampled_symbols=sampled,
                violating_symbols=violating,
                violation_rate=rate,
                max_gap_seconds=max((g.seconds for g in gaps.values()), default=None),
                lag_seconds=lag,
                lag_p95_seconds=lag_p95,
                queue_depth=depth,
                oldest_age_seconds=oldest_age,
                active_symbols=len(exchanges),
                uncovered_symbols=len(exchanges) - len(cursors[interval]),
                policy_version=policy_version,
            )
            samples.append(sample)
            _log_sample(sample, gaps, threshold, laggard)
    if store:
        await store_samples(conn, now, samples)
    return samples


def _log_sample(
    sample: SloSample, gaps: Mapping[str, GapStat], threshold: float, laggard: str | None
) -> None:
    worst = sorted(((g.seconds, s, g) for s, g in gaps.items() if g.seconds > threshold), reverse=True)[:5]
    log.info(
        "slo %s %s: %d/%d violating (rate %.4f), max gap %ss, lag %ss (worst %s), queue %d (oldest %.0fs)",
        sample.tier,
        sample.interval,
        sample.violating_symbols,
        sample.sampled_symbols,
        sample.violation_rate,
        sample.max_gap_seconds,
        sample.lag_seconds,
        laggard,
        sample.queue_depth,
        sample.oldest_age_seconds,
    )
    for seconds, symbol, g in worst:
        at = calendar.to_datetime(g.start_ns).isoformat() if g.start_ns is not None else "?"
        log.info("  %s: %d missing bars (%.0fs) from %s", symbol, g.bars, seconds, at)


def _row(s: SloSample) -> tuple[Any, ...]:
    return tuple(getattr(s, c) for c in _COLUMNS)


async def store_samples(conn: asyncpg.Connection, sampled_at: datetime, samples: Sequence[SloSample]) -> None:
    """Replace the rows of instant `sampled_at` with `samples` (one transaction)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM slo_samples WHERE sampled_at = $1", sampled_at)
        if samples:
            await conn.executemany(_INSERT, [_row(s) for s in samples])


def emit_slo_gauges(
    samples: Sequence[SloSample], metrics: TaskMetrics, *, policy_version: int | None
) -> None:
    """Send the run's gauges: the violation rate per (tier, interval), the lag per interval.

    `ingestion_lag_seconds{interval}` takes the worst tier's value; an interval whose tiers
    have no cursor at all is not sent. The queue gauges are the API's (read at scrape time).
    """
    worst_lag: dict[str, float] = {}
    for s in samples:
        metrics.gauge("slo_gap_violation_rate", {"tier": s.tier, "interval": s.interval}, s.violation_rate)
        if s.lag_seconds is not None:
            worst_lag[s.interval] = max(worst_lag.get(s.interval, 0.0), s.lag_seconds)
    for interval, lag in worst_lag.items():
        metrics.gauge("ingestion_lag_seconds", {"interval": interval}, lag)
    if policy_version is not None:
        metrics.gauge("policy_version_info", {"version": str(policy_version)}, 1.0)


def _sample(r: asyncpg.Record) -> SloSample:
    return SloSample(**{k: r[k] for k in ("id", *_COLUMNS)})


async def recent_samples(db: Db, *, limit: int = 100, since: datetime | None = None) -> list[SloSample]:
    """Stored rows, newest first: at most `limit`, none older than `since`."""
    return [_sample(r) for r in await db.fetch(_RECENT, since, limit)]


async def latest_samples(db: Db) -> list[SloSample]:
    """The newest row of every (tier, interval) ever sampled, ordered by tier and interval."""
    return [_sample(r) for r in await db.fetch(_LATEST)]


__all__ = [
    "LAG_HORIZON",
    "MIN_WINDOW_BARS",
    "GapStat",
    "SloAssessment",
    "SloSample",
    "assess",
    "emit_slo_gauges",
    "gap_threshold_seconds",
    "gaps_by_symbol",
    "lag_seconds",
    "largest_gap",
    "largest_gap_in",
    "largest_gap_seconds",
    "latest_samples",
    "measurement_instant",
    "recent_samples",
    "sample_slo",
    "sample_symbols",
    "store_samples",
    "violation_count",
]
