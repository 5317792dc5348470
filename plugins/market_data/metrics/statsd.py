"""The statsd emitter task processes send the catalog's metrics through.

A metric goes out as `<STATSD_PREFIX>.<metric>.<label value>...` (label values in catalog
order, reduced to [A-Za-z0-9_-]); statsd_exporter turns it back into the Prometheus name and
labels with `include/statsd/mapping.yml`.

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

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Final

from statsd import StatsClient

from market_data.metrics.catalog import Metric, MetricError, MetricType, lookup
from market_data.settings import Settings, get_settings

log = logging.getLogger(__name__)

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
