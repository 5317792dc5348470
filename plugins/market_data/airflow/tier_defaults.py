"""Per-tier schedule defaults for the DAG files, read from files only (safe at parse time).

The live cadence comes from the active policy when the scheduler plans a run (see
timetables.py); these defaults are what the schedule falls back to if Postgres is away.
"""

from __future__ import annotations

import csv
import functools

from market_data.policy.loader import PolicyError, load_policy_file
from market_data.records import Interval, Tier
from market_data.settings import get_settings


@functools.cache
def tier_defaults() -> dict[str, tuple[float, str, tuple[str, ...]]]:
    """tier -> (cadence seconds, timetable mode, exchange MICs of its seed symbols)."""
    s = get_settings()
    try:
        policy = load_policy_file(s.policy_file).policy
        cadences = {t.value: (tp.bar_cadence.seconds, tp.intervals) for t, tp in policy.tiers.items()}
    except (OSError, PolicyError):
        cadences = {}
    exchanges: dict[str, set[str]] = {t.value: set() for t in Tier}
    try:
        with (s.include_dir / "universe.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                exchanges.setdefault(row["tier"], set()).add(row["exchange_mic"])
    except OSError:
        pass
    out: dict[str, tuple[float, str, tuple[str, ...]]] = {}
    for tier in Tier:
        cadence, intervals = cadences.get(tier.value, (60.0, [Interval.M1]))
        mode = "after_close" if all(iv is Interval.D1 for iv in intervals) else "intraday"
        out[tier.value] = (cadence, mode, tuple(sorted(exchanges.get(tier.value) or {"XNYS"})))
    return out
