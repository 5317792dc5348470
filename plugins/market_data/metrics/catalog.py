"""The metric catalog: every metric the service emits, with its type, labels, help and source.

`CATALOG` holds the 24 metrics of the service (the predecessor's 16, three of our own, and
five for operating it: the market calendar, md_backfill wake-ups, SLO-window coverage),
`OPERATIONAL` the service's own plumbing. Each entry says where it comes from:

- "task": Airflow task processes send it over statsd (`market_data.metrics.statsd`), which
  statsd_exporter turns back into the Prometheus name and labels with
  `include/statsd/mapping.yml`, whose catalog part is generated from these entries
  (`python -m market_data.cli statsd-mapping`);
- "api": the Litestar API exposes it on `/metrics` (`api/observability/metrics.py`);
- "both": each side reports it (`policy_version_info`: the API reports the active version,
  tasks the version they ran with).

This module is data: it imports neither a statsd client nor prometheus-client.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

import msgspec

MetricType = Literal["counter", "gauge", "histogram"]
EmittedFrom = Literal["task", "api", "both"]


class MetricError(ValueError):
    """A metric call that does not fit the catalog (unknown name, wrong labels, wrong type)."""


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    """One catalog entry."""

    name: str
    """The Prometheus name (counters end in `_total`; histograms get `_bucket/_sum/_count`)."""
    type: MetricType
    labels: tuple[str, ...]
    """Label names, in the order their values appear in the statsd dotted name."""
    help: str
    emitted_from: EmittedFrom
    buckets: tuple[float, ...] = ()
    """Histogram bucket upper bounds (in the metric's unit: `_ms` metrics in milliseconds)."""
    statsd_ttl: str = ""
    """How long statsd_exporter keeps a series no task reports any more ("": for good)."""

    @property
    def from_task(self) -> bool:
        return self.emitted_from in ("task", "both")

    @property
    def from_api(self) -> bool:
        return self.emitted_from in ("api", "both")

    def statsd_glob(self, prefix: str) -> str:
        """The statsd_exporter glob that matches this metric's dotted names."""
        return ".".join([prefix, self.name, *("*" for _ in self.labels)])


# Latency buckets in milliseconds. The SLO "WS publish p99 < 250 ms" needs a 250 bound.
_PROVIDER_LATENCY_BUCKETS_MS = (
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
)
_WRITE_BATCH_BUCKETS_MS = (
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
)
_WS_PUBLISH_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)

# --- provider health ---------------------------------------------------------------------------
PROVIDER_SELECTED_TOTAL: Final = Metric(
    name="provider_selected_total",
    type="counter",
    labels=("capability", "provider"),
    help="Provider calls routed by the registry, per capability (quotes, bars:1m, ...) and provider.",
    emitted_from="task",
)
PROVIDER_ERRORS_TOTAL: Final = Metric(
    name="provider_errors_total",
    type="counter",
    labels=("provider", "endpoint", "code"),
    help="Failed provider calls; endpoint is quotes|bars, code the HTTP status or error class "
    "(ProviderError.code), ban for a hard ban.",
    emitted_from="task",
)
PROVIDER_LATENCY_MS: Final = Metric(
    name="provider_latency_ms",
    type="histogram",
    labels=("provider", "endpoint"),
    help="Provider call latency in milliseconds, successful or not.",
    emitted_from="task",
    buckets=_PROVIDER_LATENCY_BUCKETS_MS,
)
CIRCUIT_STATE: Final = Metric(
    name="circuit_state",
    type="gauge",
    labels=("provider",),
    help="Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
    emitted_from="task",
)
# --- ingestion ---------------------------------------------------------------------------------
JOBS_PROCESSED_TOTAL: Final = Metric(
    name="jobs_processed_total",
    type="counter",
    labels=("type", "provider"),
    help="Jobs completed, by job type (bars, quotes, backfill) and the provider that served them.",
    emitted_from="task",
)
GAPS_FOUND_TOTAL: Final = Metric(
    name="gaps_found_total",
    type="counter",
    labels=("interval",),
    help="Gaps (expected bars missing after a sweep) found, per bar interval.",
    emitted_from="task",
)
INGESTION_LAG_SECONDS: Final = Metric(
    name="ingestion_lag_seconds",
    type="gauge",
    labels=("interval",),
    help="Seconds between the newest bar the exchange calendar expects to be complete and the "
    "newest stored bar (worst active symbol); calendar-aware, so it stays 0 while markets are closed.",
    emitted_from="task",
)
WRITE_BATCH_MS: Final = Metric(
    name="write_batch_ms",
    type="histogram",
    labels=(),
    help="Duration in milliseconds of one point-in-time write batch (COPY + set-based insert).",
    emitted_from="task",
    buckets=_WRITE_BATCH_BUCKETS_MS,
)
# --- backfill ----------------------------------------------------------------------------------
BACKFILL_JOBS_ENQUEUED_TOTAL: Final = Metric(
    name="backfill_jobs_enqueued_total",
    type="counter",
    labels=("tier",),
    help="Backfill jobs enqueued (gap, manual or api source), per tier.",
    emitted_from="task",
)
BACKFILL_JOBS_COMPLETED_TOTAL: Final = Metric(
    name="backfill_jobs_completed_total",
    type="counter",
    labels=("tier", "status"),
    help="Backfill jobs finished, per tier and final status (done, dead).",
    emitted_from="task",
)
BACKFILL_QUEUE_DEPTH: Final = Metric(
    name="backfill_queue_depth",
    type="gauge",
    labels=("tier",),
    help="Backfill jobs queued or running, per tier (read from Postgres at scrape time).",
    emitted_from="api",
)
BACKFILL_OLDEST_AGE_SECONDS: Final = Metric(
    name="backfill_oldest_age_seconds",
    type="gauge",
    labels=("tier",),
    help="Age in seconds of the oldest queued or running backfill job, per tier; 0 when none "
    "(read from Postgres at scrape time).",
    emitted_from="api",
)
# --- websocket ---------------------------------------------------------------------------------
WS_CLIENTS_GAUGE: Final = Metric(
    name="ws_clients_gauge",
    type="gauge",
    labels=(),
    help="WebSocket clients connected to the API (the sum over its live processes).",
    emitted_from="api",
)
WS_PUBLISH_LATENCY_MS: Final = Metric(
    name="ws_publish_latency_ms",
    type="histogram",
    labels=(),
    help="Milliseconds from a bar or quote notification to its delivery to a WebSocket client.",
    emitted_from="api",
    buckets=_WS_PUBLISH_BUCKETS_MS,
)
WS_DROPPED_MESSAGES_TOTAL: Final = Metric(
    name="ws_dropped_messages_total",
    type="counter",
    labels=(),
    help="WebSocket messages dropped because a client's bounded backlog was full.",
    emitted_from="api",
)
# --- SLO ---------------------------------------------------------------------------------------
SLO_GAP_VIOLATION_RATE: Final = Metric(
    name="slo_gap_violation_rate",
    type="gauge",
    labels=("tier", "interval"),
    help="Share (0..1) of sampled symbols whose largest gap exceeds 2x the interval, per tier and "
    "interval (md_slo sampling).",
    emitted_from="task",
)
# --- added by this service ---------------------------------------------------------------------
PROVIDER_HEALTH_SCORE: Final = Metric(
    name="provider_health_score",
    type="gauge",
    labels=("provider",),
    help="Provider health score H (0..1) from the shared 60-sample history.",
    emitted_from="task",
)
JOBS_REJECTED_TOTAL: Final = Metric(
    name="jobs_rejected_total",
    type="counter",
    labels=("reason",),
    help="Jobs refused: malformed RLC messages (JobRejected.code) or a full per-tier backfill queue.",
    emitted_from="task",
)
POLICY_VERSION_INFO: Final = Metric(
    name="policy_version_info",
    type="gauge",
    labels=("version",),
    help="Always 1; version is the active policy version (API) or the version a DAG run used (tasks).",
    emitted_from="both",
    statsd_ttl="1h",  # a version no task reports for an hour disappears (T2 sweeps run at least hourly)
)

# --- operating it: the calendar, md_backfill wake-ups, coverage ----------------------------------
MARKET_OPEN: Final = Metric(
    name="market_open",
    type="gauge",
    labels=("mic",),
    help="Whether the exchange (MIC) is in a trading session now, by exchange-calendars: 1 open, 0 closed "
    "(holidays, early closes and lunch breaks are closed; a 24/7 calendar is always open); one series per "
    "exchange of the active universe (computed at scrape time).",
    emitted_from="api",
)
BACKFILL_WAKEUPS_TOTAL: Final = Metric(
    name="backfill_wakeups_total",
    type="counter",
    labels=("outcome",),
    help="Asset events the API posted to Airflow to start md_backfill after queuing jobs; outcome ok "
    "or failed (Airflow not reachable or refusing: the jobs wait for the next cadence run).",
    emitted_from="api",
)
SLO_EXPECTED_BARS: Final = Metric(
    name="slo_expected_bars",
    type="gauge",
    labels=("tier", "interval"),
    help="Bars the exchange calendars expect, complete, in the SLO window of the sampled symbols "
    "(md_slo), per tier and interval.",
    emitted_from="task",
)
SLO_MISSING_BARS: Final = Metric(
    name="slo_missing_bars",
    type="gauge",
    labels=("tier", "interval"),
    help="Of slo_expected_bars, those neither stored nor confirmed empty (md_slo, the gap module's "
    "count), per tier and interval.",
    emitted_from="task",
)
SLO_CONFIRMED_EMPTY_BARS: Final = Metric(
    name="slo_confirmed_empty_bars",
    type="gauge",
    labels=("tier", "interval"),
    help="Of slo_expected_bars, those not stored that a provider confirmed empty (minutes without "
    "trades), per tier and interval.",
    emitted_from="task",
)

CATALOG: Final[Mapping[str, Metric]] = MappingProxyType(
    {
        m.name: m
        for m in (
            PROVIDER_SELECTED_TOTAL,
            PROVIDER_ERRORS_TOTAL,
            PROVIDER_LATENCY_MS,
            CIRCUIT_STATE,
            JOBS_PROCESSED_TOTAL,
            GAPS_FOUND_TOTAL,
            INGESTION_LAG_SECONDS,
            WRITE_BATCH_MS,
            BACKFILL_JOBS_ENQUEUED_TOTAL,
            BACKFILL_JOBS_COMPLETED_TOTAL,
            BACKFILL_QUEUE_DEPTH,
            BACKFILL_OLDEST_AGE_SECONDS,
            WS_CLIENTS_GAUGE,
            WS_PUBLISH_LATENCY_MS,
            WS_DROPPED_MESSAGES_TOTAL,
            SLO_GAP_VIOLATION_RATE,
            PROVIDER_HEALTH_SCORE,
            JOBS_REJECTED_TOTAL,
            POLICY_VERSION_INFO,
            MARKET_OPEN,
            BACKFILL_WAKEUPS_TOTAL,
            SLO_EXPECTED_BARS,
            SLO_MISSING_BARS,
            SLO_CONFIRMED_EMPTY_BARS,
        )
    }
)
"""Every metric of the service, by name."""

REGISTRY_SHARED_STATE: Final = Metric(
    name="registry_shared_state",
    type="gauge",
    labels=("component",),
    help="1 while provider state is shared through Redis, 0 while this process decides on its own "
    "(Redis unreachable); component: health (breakers, history) or rate_limits.",
    emitted_from="task",
)

DATABASE_REPLICA_UP: Final = Metric(
    name="database_replica_up",
    type="gauge",
    labels=(),
    help="1 while the read replica (DATABASE_READ_URL) answers as a hot standby, 0 otherwise "
    "(down, or not in recovery); only with a replica configured.",
    emitted_from="api",
)
DATABASE_REPLICA_SERVING_READS: Final = Metric(
    name="database_replica_serving_reads",
    type="gauge",
    labels=(),
    help="1 while the API's standby-tolerant reads go to the read replica, 0 while they go to the "
    "primary (replica down, or behind by more than DATABASE_READ_MAX_LAG).",
    emitted_from="api",
)
DATABASE_REPLICA_LAG_SECONDS: Final = Metric(
    name="database_replica_lag_seconds",
    type="gauge",
    labels=(),
    help="Seconds the read replica trails the primary: how old the newest primary WAL position it "
    "has replayed is (measured every second; absent while unknown).",
    emitted_from="api",
)
DATABASE_REPLICA_LAG_BYTES: Final = Metric(
    name="database_replica_lag_bytes",
    type="gauge",
    labels=(),
    help="WAL bytes the primary has written that the read replica has not replayed (absent while unknown).",
    emitted_from="api",
)

OPERATIONAL: Final[Mapping[str, Metric]] = MappingProxyType(
    {
        m.name: m
        for m in (
            REGISTRY_SHARED_STATE,
            DATABASE_REPLICA_UP,
            DATABASE_REPLICA_SERVING_READS,
            DATABASE_REPLICA_LAG_SECONDS,
            DATABASE_REPLICA_LAG_BYTES,
        )
    }
)
"""Operational metrics beyond the catalog (the service's own plumbing)."""

CIRCUIT_STATE_VALUES: Final[Mapping[str, float]] = MappingProxyType(
    {"closed": 0.0, "half_open": 1.0, "open": 2.0}
)
"""`circuit_state` gauge value per breaker state (ordered by severity; alerts use 2 = open)."""


def lookup(metric: Metric | str) -> Metric:
    """The catalog entry for a name (or the entry itself).

    Raises:
        MetricError: the name is not in the catalog.
    """
    name = metric.name if isinstance(metric, Metric) else metric
    found = CATALOG.get(name) or OPERATIONAL.get(name)
    if found is None or (isinstance(metric, Metric) and metric is not found and metric != found):
        raise MetricError(f"metric: {name!r} is not in the catalog (market_data.metrics.CATALOG)")
    return found
