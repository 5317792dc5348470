"""The sweep DAGs' schedule: the active policy's cadence, only while the tier's markets trade.

`SessionCadenceTimetable` is registered by the plugin (market_data_plugin.py). When the
scheduler asks for the next run it reads the active policy through the policy reader
(market_data/policy/reader.py) and the tier's exchanges from the universe, both over the
`market_data_db` connection and kept CACHE_SECONDS, so a policy reload changes the schedule
at the next run without restarting Airflow. While Postgres is away the policy file stands
in, and if that cannot be read either, what the DAG was parsed with (`from_policy_file`).
Nothing is read from a database while DAG files are parsed.

Two modes:
- `intraday`: a run at every multiple of the cadence (aligned to the epoch) whose preceding
  cadence window overlaps a trading segment of one of the tier's exchanges; nights,
  weekends, holidays and lunch breaks get no runs. The run's data interval is that window.
  A tier with 24/7 symbols (crypto pairs) trades at every hour, so it runs at every hour.
- `after_close`: one run per session, `close_delay` after the close (daily bars).

First start, at any hour: while none of a tier's active symbols has a cursor (nothing swept
yet), or the DAG has never run, the next run is planned at once (its window ends at the
current minute), so every symbol gets its last completed session without waiting for the
next open. At most one such run per cadence: a run that fails leaves the tier uncovered,
and the next one waits a cadence. Once the tier has cursors the schedule above rules, so a
second start adds no run. (Without catch-up only; with catch-up every window since the
start date runs anyway.)
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable

from market_data import calendar
from market_data.airflow.connections import scheduler_market_data_dsn
from market_data.policy.reader import SAFE_DEFAULTS, PolicyReader, parse_time_policy
from market_data.policy.schema import Policy, TierPolicy
from market_data.records import Interval, Tier
from market_data.settings import get_settings
from market_data.universe import TierState, active_tiers_blocking, seed_exchanges

log = logging.getLogger(__name__)
CACHE_SECONDS = 10.0
DEFAULT_EXCHANGES = ("XNYS",)
"""Exchanges of a tier that has no symbol yet."""
_NS = 1_000_000_000
_MAX_SCAN_DAYS = 15

_POLICY = PolicyReader(ttl=CACHE_SECONDS)
"""The scheduler's policy reader (Postgres, else the policy file); shared by every timetable."""


class _TierSchedule:
    """What the scheduler reads at run time: the active policy and each tier's symbols."""

    _lock = threading.Lock()
    _tiers: tuple[float, dict[str, TierState]] | None = None

    @classmethod
    def policy(cls) -> Policy | None:
        """The active policy, else the policy file; None when neither can be read."""
        loaded = _POLICY.get_blocking(scheduler_market_data_dsn)
        return loaded.policy if loaded is not None else None

    @classmethod
    def tier(cls, tier: str) -> TierState | None:
        """The tier's active symbols' exchanges and coverage; None when it has none or Postgres is away."""
        with cls._lock:
            hit = cls._tiers
            if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1].get(tier)
        try:
            by_tier = active_tiers_blocking(scheduler_market_data_dsn())
        except Exception as exc:  # the scheduler keeps planning, whatever went wrong
            log.warning("cannot read the tiers' symbols (%s); using the parsed exchanges", exc)
            by_tier = {}
        with cls._lock:
            cls._tiers = (time.monotonic(), by_tier)
        return by_tier.get(tier)

    @classmethod
    def clear(cls) -> None:
        _POLICY.invalidate()
        with cls._lock:
            cls._tiers = None


def _mode(tp: TierPolicy) -> str:
    return "after_close" if all(iv is Interval.D1 for iv in tp.intervals) else "intraday"


def _aligned_after(t: datetime, step: float) -> datetime:
    """The first multiple of `step` seconds (since the epoch) strictly after `t`."""
    s = int(step)
    ts = int(t.timestamp())
    return datetime.fromtimestamp((ts // s + 1) * s, tz=UTC)


def _trading_in(mics: tuple[str, ...], start: datetime, end: datetime) -> bool:
    return any(calendar.sessions_open_between(mic, start, end) for mic in mics)


def _next_open_after(mics: tuple[str, ...], t: datetime) -> datetime | None:
    """The earliest trading minute at or after `t` on any of the exchanges."""
    best: int | None = None
    start_ns = calendar.to_ns(t)
    for mic in mics:
        starts = calendar.expected_bar_starts_ns(
            mic, Interval.M1, start_ns, start_ns + _MAX_SCAN_DAYS * 86400 * _NS
        )
        if starts.size:
            best = int(starts[0]) if best is None else min(best, int(starts[0]))
    return calendar.to_datetime(best) if best is not None else None


def _closes_after(mics: tuple[str, ...], t: datetime, delay: timedelta) -> datetime | None:
    """The earliest `close + delay` strictly after `t` over the exchanges."""
    best: datetime | None = None
    for mic in mics:
        starts = calendar.expected_bar_starts_ns(
            mic,
            Interval.D1,
            calendar.to_ns(t - timedelta(days=2)),
            calendar.to_ns(t + timedelta(days=_MAX_SCAN_DAYS)),
        )
        if not starts.size:
            continue
        closes = calendar.bar_end_ns(mic, Interval.D1, starts) + int(delay.total_seconds() * _NS)
        later = closes[closes > calendar.to_ns(t)]
        if later.size:
            c = calendar.to_datetime(int(np.min(later)))
            best = c if best is None or c < best else best
    return best


def _now() -> datetime:
    """The scheduler's clock (a function, so tests can set it)."""
    return datetime.now(UTC)


def _minute_floor(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


class SessionCadenceTimetable(Timetable):
    """Runs a tier's sweep on the policy's cadence while its markets trade."""

    periodic = True
    can_be_scheduled = True

    def __init__(
        self,
        tier: str,
        *,
        default_cadence_seconds: float = 60,
        mode: str = "intraday",
        exchanges: tuple[str, ...] = DEFAULT_EXCHANGES,
        close_delay_seconds: float = 900,
    ) -> None:
        self.tier = tier
        self.default_cadence_seconds = float(default_cadence_seconds)
        self.mode = mode
        self.exchanges = tuple(exchanges)
        self.close_delay_seconds = float(close_delay_seconds)

    @classmethod
    def from_policy_file(cls, tier: Tier) -> SessionCadenceTimetable:
        """The timetable a DAG file builds (files only): cadence and mode from the policy file,
        else the safe defaults; exchanges of the tier's seed symbols."""
        settings = get_settings()
        tp = parse_time_policy(settings.policy_file).tiers.get(tier) or SAFE_DEFAULTS.tiers[tier]
        exchanges = seed_exchanges(settings.include_dir / "universe.csv").get(tier.value)
        return cls(
            tier.value,
            default_cadence_seconds=tp.bar_cadence.seconds,
            mode=_mode(tp),
            exchanges=exchanges or DEFAULT_EXCHANGES,
        )

    # -- identity and serialization (what the scheduler stores) ---------------------------
    def serialize(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "default_cadence_seconds": self.default_cadence_seconds,
            "mode": self.mode,
            "exchanges": list(self.exchanges),
            "close_delay_seconds": self.close_delay_seconds,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> SessionCadenceTimetable:
        return cls(
            data["tier"],
            default_cadence_seconds=data["default_cadence_seconds"],
            mode=data["mode"],
            exchanges=tuple(data["exchanges"]),
            close_delay_seconds=data["close_delay_seconds"],
        )

    def validate(self) -> None:
        if self.mode not in ("intraday", "after_close"):
            raise ValueError(f"mode: expected intraday or after_close, got {self.mode!r}")
        if self.tier not in Tier.__members__:
            raise ValueError(f"tier: unknown tier {self.tier!r}")

    @property
    def summary(self) -> str:
        if self.mode == "after_close":
            return f"{self.tier}: after each session close"
        return f"{self.tier}: policy cadence during sessions"

    # -- scheduling -----------------------------------------------------------------------
    def _schedule(self) -> tuple[float, tuple[str, ...], bool | None]:
        """(cadence, exchanges, covered) now; what the DAG was parsed with where nothing else
        answers (covered None: unknown)."""
        policy = _TierSchedule.policy()
        tp = policy.tiers.get(Tier(self.tier)) if policy is not None else None
        cadence = tp.bar_cadence.seconds if tp is not None else self.default_cadence_seconds
        state = _TierSchedule.tier(self.tier)
        if state is None:
            return cadence, self.exchanges, None
        return cadence, state.exchanges or self.exchanges, state.covered

    def infer_manual_data_interval(self, *, run_after: pendulum.DateTime) -> DataInterval:
        cadence, _, _ = self._schedule()
        return DataInterval(start=run_after - timedelta(seconds=cadence), end=run_after)

    def first_run(
        self, last_end: datetime | None, covered: bool | None, cadence: float, now: datetime
    ) -> tuple[datetime, datetime] | None:
        """The data interval of a run planned at once because the tier has no cursor yet (or the
        DAG never ran): ending at the current minute, or a cadence after the last run when that
        was less than a cadence ago. None when the tier is covered and the DAG has run."""
        if last_end is not None and covered is not False:
            return None
        step = timedelta(seconds=cadence)
        end = _minute_floor(now)
        if last_end is not None and end < last_end + step:
            end = last_end + step
        return end - step, end

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        cadence, mics, covered = self._schedule()
        now = _now()
        after: datetime | None = last_automated_data_interval.end if last_automated_data_interval else None
        first = None if restriction.catchup else self.first_run(after, covered, cadence, now)
        if first is not None and restriction.earliest is not None and first[0] < restriction.earliest:
            first = None  # before the DAG's start date
        if restriction.earliest is not None and (after is None or after < restriction.earliest):
            after = restriction.earliest - timedelta(microseconds=1)
        if not restriction.catchup:
            after = (
                max(after, now - timedelta(seconds=cadence)) if after else now - timedelta(seconds=cadence)
            )
        if after is None:
            return None
        start, end = self.next_window(after, cadence, mics)
        if first is not None and (end is None or first[1] < end):
            start, end = first
        elif not restriction.catchup:
            # no catch-up: only the latest window that has ended, not each one since `after`
            # (after the closes of three exchanges within a day, one run, not three)
            for _ in range(64):
                if end is None or end > now:
                    break
                later = self.next_window(end, cadence, mics)
                if later[1] is None or later[1] > now:
                    break
                start, end = later
        if end is None or (restriction.latest is not None and end > restriction.latest):
            return None
        return DagRunInfo.interval(start=pendulum.instance(start), end=pendulum.instance(end))

    def next_window(
        self, after: datetime, cadence: float, mics: tuple[str, ...]
    ) -> tuple[datetime, datetime | None]:
        """The data interval of the first run ending strictly after `after`."""
        if self.mode == "after_close":
            end = _closes_after(mics, after, timedelta(seconds=self.close_delay_seconds))
            return (end - timedelta(days=1), end) if end else (after, None)
        step = timedelta(seconds=cadence)
        end = _aligned_after(after, cadence)
        for _ in range(4):  # at most a few jumps: window, then the next open
            if _trading_in(mics, end - step, end):
                return end - step, end
            opened = _next_open_after(mics, end)
            if opened is None:
                return after, None
            end = _aligned_after(opened, cadence)
        return end - step, end


class BackfillTimetable(Timetable):
    """md_backfill's schedule: every `backfill.cadence` of the active policy, day and night."""

    periodic = True
    can_be_scheduled = True

    def __init__(self, default_cadence_seconds: float = 300) -> None:
        self.default_cadence_seconds = float(default_cadence_seconds)

    @classmethod
    def from_policy_file(cls) -> BackfillTimetable:
        """The timetable md_backfill builds (files only): the policy file's cadence, else the default."""
        return cls(parse_time_policy().backfill.cadence.seconds)

    def serialize(self) -> dict[str, Any]:
        return {"default_cadence_seconds": self.default_cadence_seconds}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> BackfillTimetable:
        return cls(data["default_cadence_seconds"])

    @property
    def summary(self) -> str:
        return "policy backfill.cadence"

    def _cadence(self) -> float:
        policy = _TierSchedule.policy()
        return policy.backfill.cadence.seconds if policy is not None else self.default_cadence_seconds

    def infer_manual_data_interval(self, *, run_after: pendulum.DateTime) -> DataInterval:
        return DataInterval(start=run_after - timedelta(seconds=self._cadence()), end=run_after)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        cadence = self._cadence()
        after: datetime | None = last_automated_data_interval.end if last_automated_data_interval else None
        if restriction.earliest is not None and (after is None or after < restriction.earliest):
            after = restriction.earliest - timedelta(microseconds=1)
        if not restriction.catchup:
            now = datetime.now(UTC)
            floor = now - timedelta(seconds=cadence)
            after = max(after, floor) if after else floor
        if after is None:
            return None
        end = _aligned_after(after, cadence)
        if restriction.latest is not None and end > restriction.latest:
            return None
        return DagRunInfo.interval(
            start=pendulum.instance(end - timedelta(seconds=cadence)), end=pendulum.instance(end)
        )
