"""The policy document's shape: msgspec Structs that refuse unknown keys.

Durations are written as short strings (`"90s"`, `"5m"`, `"1h"`, `"2d"`) and decoded into
`Duration`; times are ISO 8601. Cross-field rules live in `validation.py`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec

from market_data.records import Interval, Tier

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_DAYS = 36_500
"""Longest duration accepted (100 years): `now - duration` must stay a valid date."""


class Duration:
    """A length of time written like `"90s"`, `"5m"`, `"1h"` or `"2d"`."""

    __slots__ = ("seconds", "text")

    def __init__(self, text: str) -> None:
        m = _DURATION_RE.match(text) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"expected a duration like '90s', '5m', '1h' or '2d', got {text!r}")
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if seconds > MAX_DURATION_DAYS * 86400:
            raise ValueError(f"at most {MAX_DURATION_DAYS}d, got {text.strip()!r}")
        self.text = text.strip()
        self.seconds = seconds

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"


def dec_hook(type_: type, obj: object) -> object:
    if type_ is Duration:
        if not isinstance(obj, str):
            raise ValueError(f"expected a duration string like '5m', got {type(obj).__name__}")
        return Duration(obj)
    raise NotImplementedError(f"cannot decode {type_!r}")


def enc_hook(obj: object) -> object:
    if isinstance(obj, Duration):
        return obj.text
    raise NotImplementedError(f"cannot encode {type(obj)!r}")


Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every policy section: unknown keys are errors, not silently ignored."""


class TierPolicy(_Section):
    intervals: list[Interval]
    """Bar intervals swept for this tier."""
    bar_cadence: Duration
    """How often the tier's sweep DAG runs."""
    quotes: bool = False
    """Whether the sweep also fetches quotes."""
    quote_cadence: Duration | None = None
    """How often quotes are refreshed (defaults to bar_cadence)."""
    lookback: Duration = Duration("15m")
    """How far back a live sweep reaches; older holes become backfill jobs."""
    revision_window: Duration = Duration("0s")
    """Recent bars every run reads again, so corrections vendors send after the fact (late
    trades) are stored as new versions; at most `lookback`."""
    initial_sessions: PositiveInt = 1
    """Sessions of history fetched for a symbol that has no cursor yet."""
    batch_size: PositiveInt = 250
    """Symbols per mapped sweep task."""
    providers: list[str] = []
    """Providers this tier may use, in preference order (empty: every enabled one)."""


class OutageWindow(_Section):
    start: datetime
    end: datetime


class SyntheticFaults(_Section):
    """Fault knobs of a synthetic provider instance."""

    latency_ms: NonNegative = 0.0
    latency_jitter_ms: NonNegative = 0.0
    error_rate: Probability = 0.0
    """Share of calls that fail with a 5xx."""
    rate_429: Probability = 0.0
    """Share of calls answered with HTTP 429."""
    retry_after_seconds: NonNegative = 1.0
    outages: list[OutageWindow] = []
    """Wall-clock windows during which every call fails with 503."""
    drop_rate: Probability = 0.0
    """Share of bars missing from answers until `drop_heal` after the bar ends (late bars)."""
    drop_heal: Duration = Duration("10m")
    no_trade_rate: Probability = 0.0
    """Share of 1m bars that never exist (minutes without trades: not gaps)."""
    symbols_per_request: PositiveInt = 50
    seed: int = 0
    revision_rate: Probability = 0.0
    """Share of 1m bars the provider corrects after the fact (late trades), chosen per
    (symbol, minute) the same way in every process; longer bars holding one change with it."""
    revision_delay: Duration = Duration("45s")
    """A corrected bar is served as first delivered until this long after it ends, revised after."""
    revision_size: Annotated[float, msgspec.Meta(ge=0.0, le=0.5)] = 0.002
    """Largest move of a corrected bar's close, as a fraction of it (its volume grows 1-10 %)."""


class ProviderPolicy(_Section):
    kind: str = ""
    """Adapter to use (synthetic, finnhub, yahoo, alpaca); empty means the provider's name."""
    enabled: bool = True
    priority: int = 100
    """Tie-break between equal health scores: lower wins."""
    calls_per_minute: PositiveInt | None = None
    """Rate limit across every process (default: the adapter's own)."""
    pool: str = ""
    """Airflow pool of its backfill tasks (default: provider_<name>)."""
    capabilities: list[str] = []
    """Restrict to these capabilities (`quotes`, `bars:1m`, ...); empty: all the adapter has."""
    latency_target_ms: Annotated[float, msgspec.Meta(gt=0)] = 500.0
    """Latency at which the health score's latency term reaches zero."""
    base_url: str | None = None
    """Override of the provider's API address (tests point it at a local server)."""
    max_concurrency: PositiveInt = 8
    """Concurrent calls from one task."""
    options: dict[str, str] = {}
    """Vendor settings (alpaca: feed = "iex" | "sip" | "delayed_sip")."""
    faults: SyntheticFaults | None = None
    """Only for synthetic providers."""

    def adapter(self, name: str) -> str:
        return self.kind or name

    def pool_name(self, name: str) -> str:
        return self.pool or f"provider_{name}"


class BreakerPolicy(_Section):
    failure_threshold: PositiveInt = 5
    """Consecutive failures that open a provider's breaker."""
    cooldown: Duration = Duration("30s")
    """How long an open breaker waits before letting one probe through."""
    max_cooldown: Duration = Duration("10m")
    history_horizon: Duration = Duration("15m")
    """Call samples older than this stop counting towards health (besides the last 60)."""


class HealthWeights(_Section):
    breaker: NonNegative = 0.45
    latency: NonNegative = 0.25
    errors: NonNegative = 0.20
    completeness: NonNegative = 0.10


class BackfillPolicy(_Section):
    cadence: Duration = Duration("5m")
    claim_limit: PositiveInt = 500
    """Jobs claimed per md_backfill run."""
    batch_size: PositiveInt = 20
    """Jobs per mapped backfill task."""
    caps: dict[Tier, PositiveInt] = msgspec.field(
        default_factory=lambda: {Tier.T0: 20_000, Tier.T1: 20_000, Tier.T2: 40_000}
    )
    """Queued jobs per tier beyond which new jobs are refused."""
    priorities: dict[str, int] = msgspec.field(
        default_factory=lambda: {"manual": 0, "T0": 10, "T1": 20, "T2": 30}
    )
    """Lower runs first."""
    max_range: Duration = Duration("30d")
    """Longest range a single manual or API backfill may ask for, for intervals
    `max_range_per_interval` does not name (the intraday ones by default)."""
    max_range_per_interval: dict[Interval, Duration] = msgspec.field(
        default_factory=lambda: {Interval.D1: Duration("3660d")}
    )
    """Per-interval limits instead of `max_range`: ten years of daily bars (about 2,500) per request."""
    max_age: Duration = Duration("730d")
    """How far back a manual or API backfill may start, for intervals `max_age_per_interval`
    does not name (the intraday ones by default)."""
    max_age_per_interval: dict[Interval, Duration] = msgspec.field(
        default_factory=lambda: {Interval.D1: Duration("18250d")}
    )
    """Per-interval limits instead of `max_age`: daily bars 50 years back by default (vendors
    serve decades of daily history; enough for corporate-action adjusted series since 2000)."""
    retries: Annotated[int, msgspec.Meta(ge=0)] = 3
    """Airflow retries of a backfill batch before its jobs go to the DLQ (read when the DAG is parsed)."""
    retry_delay: Duration = Duration("30s")
    """First retry delay; doubles on every retry, up to 10 minutes (read when the DAG is parsed)."""

    def max_range_for(self, interval: Interval) -> Duration:
        """Longest range a manual or API backfill of `interval` bars may ask for."""
        return self.max_range_per_interval.get(interval, self.max_range)

    def max_age_for(self, interval: Interval) -> Duration:
        """How far back a manual or API backfill of `interval` bars may start."""
        return self.max_age_per_interval.get(interval, self.max_age)

    @property
    def intraday_max_age(self) -> Duration:
        """The longest limit of an intraday interval (how far back intraday bars may be written)."""
        return max((self.max_age_for(iv) for iv in Interval if iv.is_intraday), key=lambda d: d.seconds)

    lease: Duration = Duration("15m")
    """A running job whose worker vanished returns to the queue after this."""
    settle: Duration = Duration("10m")
    """A provider's "no data" for bars that ended less than this long ago is not trusted
    (vendors publish late): the job goes back to the queue for a later run instead of
    recording those minutes as confirmed empty."""


class RetentionPolicy(_Section):
    quotes: Duration = Duration("30d")
    dead_jobs: Duration = Duration("14d")
    done_jobs: Duration = Duration("7d")
    slo_samples: Duration = Duration("30d")
    rejected_jobs: Duration = Duration("30d")
    partitions_ahead: PositiveInt = 3
    """Monthly bar partitions kept created ahead of time."""


class SloPolicy(_Section):
    gap_threshold_multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0
    """A gap longer than this many intervals violates the continuity SLO."""
    sample_size: PositiveInt = 200
    window: Duration = Duration("1h")
    violation_rate_max: Probability = 0.005
    lag_warn: Duration = Duration("5m")
    lag_critical: Duration = Duration("15m")
    slow_call: Duration = Duration("2s")
    """A provider call slower than this logs a WARNING in the task's log (provider, capability,
    symbols, duration)."""


class JobSourcePolicy(_Section):
    mode: Literal["local", "rlc"] = "local"
    """local: jobs from universe + cursors; rlc: popped from the Redis list below."""
    rlc_list: str = "md:rlc:jobs"
    rlc_max_per_run: PositiveInt = 10_000


class Policy(_Section, kw_only=True):
    """The whole document. Versions are numbered by the server when a document is stored."""

    description: str = ""
    tiers: dict[Tier, TierPolicy]
    providers: dict[str, ProviderPolicy]
    breaker: BreakerPolicy = msgspec.field(default_factory=BreakerPolicy)
    health_weights: HealthWeights = msgspec.field(default_factory=HealthWeights)
    backfill: BackfillPolicy = msgspec.field(default_factory=BackfillPolicy)
    retention: RetentionPolicy = msgspec.field(default_factory=RetentionPolicy)
    slo: SloPolicy = msgspec.field(default_factory=SloPolicy)
    jobs: JobSourcePolicy = msgspec.field(default_factory=JobSourcePolicy)
