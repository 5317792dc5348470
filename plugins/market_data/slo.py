"""SLO sampling: continuity (gap violation rate), freshness (ingestion lag), backfill queue.

`md_slo` calls `sample_slo` every few minutes; `/stats/slo` reads what it stored. Everything
below is measured in *trading time* with the exchange calendar (`market_data.calendar`):
nights, weekends, holidays, early closes and lunch breaks hold no expected bars, so they
never make a gap or a lag. Computations are numpy over int64 nanoseconds (UTC). Which bars
are missing, and in which runs, is `market_data.gaps`; the rows, their verdict against the
thresholds and the gauges are `market_data.slo_samples`.

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

**Coverage** of the sampled symbols (the data-quality dashboard): every expected bar of their
windows that has ended by `now` (the whole window, the not-yet-ingested tail included), split
by `gaps.count_coverage` into stored, confirmed empty and missing; summed over the sample.

A run stores one `slo_samples` row per (tier, interval) of the policy, at `sampled_at =
now`, replacing rows stored earlier for the same instant (re-running a run rewrites it).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import asyncpg
import msgspec
import numpy as np

from market_data import calendar
from market_data.gaps import (
    Coverage,
    EmptyRanges,
    NsArray,
    confirmed_empty_ranges,
    count_coverage,
    longest_run,
    missing_runs,
    stored_bar_starts,
)
from market_data.policy.schema import Policy
from market_data.records import Interval, ensure_utc
from market_data.slo_samples import SloSample, gap_threshold_seconds, store_samples

log = logging.getLogger(__name__)

MIN_WINDOW_BARS = 20
"""The window holds at least this many expected bars of the exchange (see the module doc)."""
LAG_HORIZON = timedelta(days=30)
"""Lags count bars at most this far back (an older cursor reports this much)."""
_WINDOW_LOOKBACK = timedelta(days=14)
"""Calendar time searched for the window's minimum bars, beyond bars x interval x 2."""
_NS = 1_000_000_000


NO_COVERAGE = Coverage(expected=0, stored=0, confirmed_empty=0, missing=0)


class GapStat(msgspec.Struct, frozen=True, kw_only=True):
    """The largest gap of one symbol in one window, and the window's coverage."""

    bars: int
    """Missing bars in the longest run."""
    seconds: float
    """bars x interval seconds."""
    start_ns: int | None = None
    """Start of the first missing bar of that run (None without a gap)."""
    coverage: Coverage = NO_COVERAGE
    """Every expected bar of the window ended by now: stored, confirmed empty or missing."""


NO_GAP = GapStat(bars=0, seconds=0.0)


# -- pure computations ------------------------------------------------------------------------
def window_min_bars(multiplier: float) -> int:
    """Bars a window holds at least: room for a violating run with stored bars around it."""
    return max(MIN_WINDOW_BARS, 2 * math.ceil(multiplier) + 2)


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
    """Largest gap of each symbol of `exchanges` (symbol -> MIC); calendars computed once per MIC.

    Args:
        present: stored bar starts per symbol (any order, repeats allowed).
        empty: confirmed-empty ranges per symbol.
    """
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
        stored = stored[stored >= start]
        ranges = (empty or {}).get(symbol, ())
        gap = _largest_gap(expected, stored, interval, ranges)
        out[symbol] = msgspec.structs.replace(gap, coverage=count_coverage(expected, stored, ranges))
    return out


def _largest_gap(expected: NsArray, stored: NsArray, interval: Interval, empty: EmptyRanges) -> GapStat:
    """The longest missing run of a window's `expected` bars, judged up to the newest stored bar."""
    if stored.size == 0:
        return NO_GAP  # nothing stored in the window: nothing to judge (the lag shows it)
    run = longest_run(missing_runs(expected[expected <= stored.max()], stored, empty))
    if run is None:
        return NO_GAP
    first, _, bars = run
    return GapStat(bars=bars, seconds=float(bars * interval.seconds), start_ns=first)


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


# -- SQL --------------------------------------------------------------------------------------
_ACTIVE_WITH_CURSORS = """
SELECT u.symbol, u.exchange_mic, c.interval,
       (extract(epoch FROM max(c.last_ts)) * 1000000)::bigint AS last_us
FROM symbol_universe u
LEFT JOIN ingestion_cursors c ON c.symbol = u.symbol AND c.interval = ANY($2::text[])
WHERE u.tier = $1 AND u.active
GROUP BY 1, 2, 3"""

_QUEUE = """
SELECT tier, count(*) AS depth, min(created_at) AS oldest
FROM backfill_jobs WHERE status IN ('queued', 'running') GROUP BY tier"""


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
                lo = calendar.to_datetime(lo_ns)
                present = await stored_bar_starts(conn, picked, interval, lo, now)
                empty = await confirmed_empty_ranges(conn, picked, interval, lo, now)
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
            covered = [g.coverage for g in gaps.values()]
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
                expected_bars=sum(c.expected for c in covered),
                missing_bars=sum(c.missing for c in covered),
                confirmed_empty_bars=sum(c.confirmed_empty for c in covered),
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


__all__ = [
    "LAG_HORIZON",
    "MIN_WINDOW_BARS",
    "GapStat",
    "gaps_by_symbol",
    "lag_seconds",
    "sample_seed",
    "sample_slo",
    "sample_symbols",
    "violation_count",
    "window_min_bars",
    "window_start_ns",
]
