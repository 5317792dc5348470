"""The metric catalog, the statsd emitter for task processes and the API's Prometheus registry.

One catalog (`CATALOG`, 19 metrics) names every metric the service emits, with its type,
labels, help text and where it comes from:

- "task": Airflow task processes send it over statsd (UDP) as a dotted name,
  `<STATSD_PREFIX>.<metric>.<label value>...` (label values in catalog order), which
  statsd_exporter turns back into the Prometheus name and labels using
  `include/statsd/mapping.yml`;
- "api": the Litestar API exposes it on `/metrics` through prometheus-client;
- "both": each side reports it (`policy_version_info`: the API reports the active version,
  tasks the version they ran with).

Task code:

    from market_data.metrics import task_metrics

    m = task_metrics()
    m.incr("provider_selected_total", {"capability": "bars:1m", "provider": "synthetic"})
    m.gauge("circuit_state", {"provider": "finnhub"}, CIRCUIT_STATE_VALUES["open"])
    m.observe("provider_latency_ms", {"provider": "yahoo", "endpoint": "bars"}, 182.5)
    with m.timer("write_batch_ms"):
        ...

A wrong metric name, a wrong label set or a method that does not fit the metric's type is a
programmer error and raises `MetricError`; network problems never raise (UDP, fire and forget).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, Literal

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from statsd import StatsClient

from market_data.records import Tier
from market_data.settings import Settings, get_settings

log = logging.getLogger(__name__)

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
    help="WebSocket clients connected to this API process.",
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

OPERATIONAL: Final[Mapping[str, Metric]] = MappingProxyType({m.name: m for m in (REGISTRY_SHARED_STATE,)})
"""Operational metrics beyond the 19 of the catalog (the service's own plumbing)."""

CIRCUIT_STATE_VALUES: Final[Mapping[str, float]] = MappingProxyType(
    {"closed": 0.0, "half_open": 1.0, "open": 2.0}
)
"""`circuit_state` gauge value per breaker state (ordered by severity; alerts use 2 = open)."""

HTTP_REQUEST_DURATION_SECONDS: Final = "http_request_duration_seconds"
"""API-only helper histogram (not in the catalog): request latency by method, route, status."""


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


# ------------------------------------------------------------------------------------------------
# statsd (task processes)
# ------------------------------------------------------------------------------------------------
_UNSAFE_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_LABEL_VALUE_LENGTH: Final = 64
EMPTY_LABEL_VALUE: Final = "none"


def sanitize_label_value(value: object) -> str:
    """A label value safe inside a statsd dotted name: only [A-Za-z0-9_-], never empty.

    `.` would split the name, `:` and `|` end it, `#`, `,` and `=` start tag syntaxes the
    exporter understands; all become `_` ("bars:1m" -> "bars_1m").
    """
    text = _UNSAFE_LABEL_CHARS.sub("_", str(value))[:MAX_LABEL_VALUE_LENGTH]
    return text or EMPTY_LABEL_VALUE


@lru_cache(maxsize=8192)
def _dotted_name(metric_name: str, values: tuple[str, ...]) -> str:
    # The prefix is added by StatsClient; the cache keeps the hot path to a dict lookup.
    if not values:
        return metric_name
    return ".".join([metric_name, *(sanitize_label_value(v) for v in values)])


def statsd_name(metric: Metric | str, labels: Mapping[str, object] | None = None) -> str:
    """The dotted statsd name (without prefix) for a metric and its labels.

    Raises:
        MetricError: unknown metric or a label set that differs from the catalog's.
    """
    m = lookup(metric)
    return _dotted_name(m.name, _label_values(m, labels))


def _label_values(m: Metric, labels: Mapping[str, object] | None) -> tuple[str, ...]:
    if not labels:
        if m.labels:
            raise MetricError(f"labels: {m.name} needs labels {list(m.labels)}, got none")
        return ()
    if len(labels) != len(m.labels) or labels.keys() != set(m.labels):
        raise MetricError(f"labels: {m.name} takes exactly {list(m.labels)}, got {sorted(labels)}")
    return tuple(str(labels[k]) for k in m.labels)


class _StatsClient(StatsClient):
    """StatsClient plus the `h` (histogram) stat type.

    statsd_exporter divides `|ms` timers by 1000 (Prometheus presumes seconds) but keeps
    `|h` values as sent; our histograms are in milliseconds, as their names say.
    """

    def histogram(self, stat: str, value: float, rate: float = 1) -> None:
        self._send_stat(stat, f"{value:.6f}|h", rate)


class TaskMetrics:
    """Catalog-checked statsd emitter for task processes: cheap, and silent on network trouble.

    The address is resolved once when the emitter is built (no DNS per call). If it cannot be
    resolved the emitter stays silent and tries again at most once a minute.
    """

    RESOLVE_RETRY_SECONDS: Final = 60.0

    def __init__(self, host: str, port: int, prefix: str, *, enabled: bool = True) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix
        self.enabled = enabled and port > 0
        self._client: _StatsClient | None = None
        self._next_resolve = 0.0
        self._lock = threading.Lock()
        if self.enabled:
            self._connect()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TaskMetrics:
        """An emitter for STATSD_HOST / STATSD_PORT / STATSD_PREFIX (STATSD_PORT=0 disables)."""
        s = settings or get_settings()
        return cls(s.statsd_host, s.statsd_port, s.statsd_prefix)

    @classmethod
    def disabled(cls) -> TaskMetrics:
        """An emitter that checks calls against the catalog but sends nothing."""
        return cls("127.0.0.1", 0, "market_data", enabled=False)

    def _connect(self) -> _StatsClient | None:
        with self._lock:
            if self._client is not None:
                return self._client
            now = time.monotonic()
            if now < self._next_resolve:
                return None
            try:
                self._client = _StatsClient(self.host, self.port, prefix=self.prefix or None)
            except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
                self._next_resolve = now + self.RESOLVE_RETRY_SECONDS
                log.warning(
                    "statsd: cannot resolve %s:%s (%s); metrics are dropped", self.host, self.port, exc
                )
            return self._client

    def _target(self, m: Metric, labels: Mapping[str, object] | None, kind: MetricType) -> str:
        if m.type != kind:
            raise MetricError(f"metric: {m.name} is a {m.type}, not a {kind}")
        if not m.from_task:
            raise MetricError(f"metric: {m.name} is exposed by the API, not sent from tasks")
        return _dotted_name(m.name, _label_values(m, labels))

    def _client_or_none(self) -> _StatsClient | None:
        if not self.enabled:
            return None
        return self._client if self._client is not None else self._connect()

    def incr(self, metric: Metric | str, labels: Mapping[str, object] | None = None, value: int = 1) -> None:
        """Add `value` to a counter."""
        if value < 0:
            raise MetricError(f"value: counters only go up, got {value}")
        name = self._target(lookup(metric), labels, "counter")
        client = self._client_or_none()
        if client is not None and value:
            self._safely(client.incr, name, value)

    def gauge(self, metric: Metric | str, labels: Mapping[str, object] | None, value: float) -> None:
        """Set a gauge."""
        name = self._target(lookup(metric), labels, "gauge")
        client = self._client_or_none()
        if client is not None:
            self._safely(client.gauge, name, value)

    def observe(self, metric: Metric | str, labels: Mapping[str, object] | None, value: float) -> None:
        """Record one histogram observation (in the metric's unit: milliseconds for `_ms`)."""
        name = self._target(lookup(metric), labels, "histogram")
        client = self._client_or_none()
        if client is not None:
            self._safely(client.histogram, name, value)

    timing = observe

    @contextmanager
    def timer(self, metric: Metric | str, labels: Mapping[str, object] | None = None) -> Iterator[None]:
        """Observe the wall time of the block, in milliseconds, into a histogram (also on error)."""
        m = lookup(metric)
        self._target(m, labels, "histogram")  # fail before the block runs, not after
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(m, labels, (time.perf_counter() - start) * 1000.0)

    @staticmethod
    def _safely(send: Callable[..., Any], name: str, value: float) -> None:
        try:
            send(name, value)
        except Exception:  # metrics must never break a task
            log.debug("statsd send failed for %s", name, exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


_default: TaskMetrics | None = None
_default_lock = threading.Lock()


def task_metrics() -> TaskMetrics:
    """The process's emitter, built on first use from the settings."""
    global _default
    current = _default
    if current is None:
        with _default_lock:
            if _default is None:
                _default = TaskMetrics.from_settings()
            current = _default
    return current


def set_task_metrics(emitter: TaskMetrics | None) -> None:
    """Replace the process's emitter (`TaskMetrics.disabled()` turns metrics off); None: rebuild
    from the settings on next use."""
    global _default
    with _default_lock:
        old, _default = _default, emitter
    if old is not None and old is not emitter:
        old.close()


# ------------------------------------------------------------------------------------------------
# prometheus-client (the API)
# ------------------------------------------------------------------------------------------------
class ScrapeValues(msgspec.Struct, frozen=True, kw_only=True):
    """What the API reads from Postgres when /metrics is scraped."""

    backfill_queue_depth: dict[str, int] = {}
    """Jobs queued or running per tier; tiers left out count as 0."""
    backfill_oldest_age_seconds: dict[str, float] = {}
    """Age of the oldest queued or running job per tier; tiers left out count as 0."""
    policy_version: int | None = None
    """The active policy version (None: no `policy_version_info` sample)."""


ScrapeSource = Callable[[], Awaitable[ScrapeValues]]
"""Async callback the API registers; it owns the DB pool and runs one query per scrape."""


class _ScrapeValuesCollector(Collector):
    """Exposes the latest ScrapeValues; families stay declared (HELP/TYPE) when values are missing."""

    def __init__(self) -> None:
        self.values: ScrapeValues | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(None)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(self.values)

    @staticmethod
    def _families(values: ScrapeValues | None) -> list[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            BACKFILL_QUEUE_DEPTH.name, BACKFILL_QUEUE_DEPTH.help, labels=list(BACKFILL_QUEUE_DEPTH.labels)
        )
        age = GaugeMetricFamily(
            BACKFILL_OLDEST_AGE_SECONDS.name,
            BACKFILL_OLDEST_AGE_SECONDS.help,
            labels=list(BACKFILL_OLDEST_AGE_SECONDS.labels),
        )
        policy = GaugeMetricFamily(
            POLICY_VERSION_INFO.name, POLICY_VERSION_INFO.help, labels=list(POLICY_VERSION_INFO.labels)
        )
        if values is not None:
            tiers = [t.value for t in Tier]
            extra = set(values.backfill_queue_depth) | set(values.backfill_oldest_age_seconds)
            tiers += sorted(extra - set(tiers))
            for tier in tiers:
                depth.add_metric([tier], float(values.backfill_queue_depth.get(tier, 0)))
                age.add_metric([tier], float(values.backfill_oldest_age_seconds.get(tier, 0.0)))
            if values.policy_version is not None:
                policy.add_metric([str(values.policy_version)], 1.0)
        return [depth, age, policy]


class ApiMetrics:
    """The API's metrics in their own CollectorRegistry (one per app: create_app may run twice).

    The API updates `ws_clients`, `ws_publish_latency_ms`, `ws_dropped_messages` and
    `http_request_duration_seconds` as things happen; the queue gauges and the active policy
    version come from `source`, awaited by `render()` on each scrape.
    """

    def __init__(self, source: ScrapeSource | None = None, *, scrape_timeout: float = 2.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.source = source
        self.scrape_timeout = scrape_timeout
        self.content_type: str = CONTENT_TYPE_LATEST
        self.ws_clients = Gauge(WS_CLIENTS_GAUGE.name, WS_CLIENTS_GAUGE.help, registry=self.registry)
        self.ws_publish_latency_ms = Histogram(
            WS_PUBLISH_LATENCY_MS.name,
            WS_PUBLISH_LATENCY_MS.help,
            buckets=WS_PUBLISH_LATENCY_MS.buckets,
            registry=self.registry,
        )
        self.ws_dropped_messages = Counter(
            WS_DROPPED_MESSAGES_TOTAL.name, WS_DROPPED_MESSAGES_TOTAL.help, registry=self.registry
        )
        self.http_request_duration_seconds = Histogram(
            HTTP_REQUEST_DURATION_SECONDS,
            "HTTP request duration in seconds, by method, route template and status code.",
            labelnames=("method", "route", "status"),
            registry=self.registry,
        )
        self._scraped = _ScrapeValuesCollector()
        self.registry.register(self._scraped)

    def set_source(self, source: ScrapeSource | None) -> None:
        """Register (or remove) the scrape-time callback, e.g. once the DB pool is open."""
        self.source = source

    async def refresh(self) -> None:
        """Await the source once; on failure or timeout the queue samples are left out."""
        if self.source is None:
            return
        try:
            self._scraped.values = await asyncio.wait_for(self.source(), self.scrape_timeout)
        except Exception as exc:
            self._scraped.values = None
            log.warning("metrics: scrape-time values unavailable (%s: %s)", type(exc).__name__, exc)

    async def render(self) -> bytes:
        """The exposition text for `/metrics` (serve it with `content_type`)."""
        await self.refresh()
        return self.generate_latest()

    def generate_latest(self) -> bytes:
        """The exposition text with the values last refreshed (no I/O)."""
        return _generate_latest(self.registry)


def build_api_metrics(source: ScrapeSource | None = None, *, scrape_timeout: float = 2.0) -> ApiMetrics:
    """The API's metric objects for every API-side catalog entry, in a fresh registry."""
    return ApiMetrics(source, scrape_timeout=scrape_timeout)


def api_metric_names() -> list[str]:
    """Catalog names the API exposes."""
    return [m.name for m in CATALOG.values() if m.from_api]


def task_metric_names() -> list[str]:
    """Catalog names task processes send over statsd."""
    return [m.name for m in CATALOG.values() if m.from_task]


__all__ = [
    "CATALOG",
    "CIRCUIT_STATE_VALUES",
    "HTTP_REQUEST_DURATION_SECONDS",
    "ApiMetrics",
    "Metric",
    "MetricError",
    "ScrapeSource",
    "ScrapeValues",
    "TaskMetrics",
    "build_api_metrics",
    "lookup",
    "sanitize_label_value",
    "set_task_metrics",
    "statsd_name",
    "task_metrics",
]
