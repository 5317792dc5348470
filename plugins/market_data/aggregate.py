"""Bars as columns, and building bars of a longer timeframe from them.

`Bars` is the one in-memory form of a read, stored or built: numpy columns that every
encoder (JSON, CSV, Parquet) and every later step (adjustment, aggregation) takes as they are.

Aggregation (`aggregate`) takes base bars in time order with the bucket each belongs to
(`timeframes.bucket_starts_ns`): open is the first bar's open, high the highest high, low the
lowest low, close the last close, volume and trade_count sums, vwap the volume-weighted mean
of the base vwaps; `as_of` is the newest base version's, `provider` the base bars' provider
(several joined by `+`). A sum over a base bar without vwap or trade_count has none. A built
bar is `complete` when every base bar it uses is complete (stored bars: final) and no
expected base bar of its bucket is missing (`mark_missing`, fed by the gap module).
Volume may be fractional (crypto); sums are float64, exact for whole shares below 2**53.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

NsArray = np.ndarray
READ_AS_STORED = -1
"""`base_bars` of a bar read as stored (it was built from nothing here)."""


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars as equally long columns, in one order (ascending `ts` unless a reader reversed them)."""

    ts: NsArray
    """Start of each bar, int64 ns since the epoch (UTC); daily and longer: the date at 00:00 UTC."""
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    """float64 (whole numbers for shares)."""
    vwap: np.ndarray
    """float64; NaN: unknown."""
    trade_count: np.ndarray
    """float64; NaN: unknown."""
    provider: np.ndarray
    """object array of str."""
    as_of: NsArray
    """int64 ns: when this version was stored (built bars: the newest base version)."""
    complete: np.ndarray
    """bool: a stored bar is complete when final; a built one, see the module docstring."""
    base_bars: np.ndarray
    """int64: base bars a built bar was made of; READ_AS_STORED for a stored bar."""

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def empty(cls) -> Bars:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return cls(
            ts=i,
            open=f,
            high=f,
            low=f,
            close=f,
            volume=f,
            vwap=f,
            trade_count=f,
            provider=np.empty(0, object),
            as_of=i,
            complete=np.empty(0, bool),
            base_bars=i,
        )

    def take(self, index: np.ndarray | slice) -> Bars:
        """The bars at `index` (a slice, integer indices or a boolean mask), in that order."""
        return Bars(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def reversed(self) -> Bars:
        return self.take(slice(None, None, -1))

    @classmethod
    def concat(cls, parts: Sequence[Bars]) -> Bars:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def newest_versions(bars: Bars) -> Bars:
    """The last row of each `ts` of bars ordered by (ts, as_of): the newest version of each bar."""
    if len(bars) < 2:
        return bars
    last = np.empty(len(bars), dtype=bool)
    last[:-1] = bars.ts[1:] != bars.ts[:-1]
    last[-1] = True
    return bars if last.all() else bars.take(last)


def _providers(provider: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each bucket's provider; several distinct ones are joined by '+' (sorted)."""
    codes, names = pd.factorize(provider)
    lo = np.minimum.reduceat(codes, starts)
    hi = np.maximum.reduceat(codes, starts)
    out = np.asarray(names, dtype=object)[lo]
    for i in np.flatnonzero(lo != hi):  # rare: a bucket filled by more than one provider
        names_i = {part for joined in provider[starts[i] : ends[i]].tolist() for part in joined.split("+")}
        out[i] = "+".join(sorted(names_i))
    return out


def aggregate(base: Bars, buckets: NsArray) -> Bars:
    """One bar per bucket of `base` (ascending `ts`; `buckets[i]` is the bucket of bar i).

    Bars whose bucket is negative (`timeframes.NO_BUCKET`: outside every session) are left out.
    """
    if (buckets < 0).any():
        keep = buckets >= 0
        base, buckets = base.take(keep), buckets[keep]
    n = len(base)
    if n == 0:
        return Bars.empty()
    if (np.diff(buckets) < 0).any():
        raise ValueError("aggregate: base bars must be in time order")
    starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
    ends = np.append(starts[1:], n)
    volume = np.add.reduceat(base.volume, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.add.reduceat(base.vwap * base.volume, starts) / volume
    return Bars(
        ts=buckets[starts],
        open=base.open[starts],
        high=np.maximum.reduceat(base.high, starts),
        low=np.minimum.reduceat(base.low, starts),
        close=base.close[ends - 1],
        volume=volume,
        vwap=np.where(volume > 0, vwap, np.nan),
        trade_count=np.add.reduceat(base.trade_count, starts),
        provider=_providers(base.provider, starts, ends),
        as_of=np.maximum.reduceat(base.as_of, starts),
        complete=np.logical_and.reduceat(base.complete, starts),
        base_bars=(ends - starts).astype(np.int64),
    )


def mark_missing(bars: Bars, missing_buckets: NsArray) -> Bars:
    """`bars` with `complete` false for each bar whose bucket has a missing expected base bar."""
    if missing_buckets.size == 0 or len(bars) == 0:
        return bars
    return replace(bars, complete=bars.complete & ~np.isin(bars.ts, missing_buckets))
