"""The API's Prometheus registry (prometheus-client): the catalog's API-side metrics, with their
names, help and buckets from `market_data.metrics.CATALOG`, plus the HTTP request histogram.

Several API processes (`MD_API_WORKERS`, see `api/serve.py`) use prometheus-client's
multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set, every process writes its samples to
files there and each `/metrics` adds up every process's files, so any process shows the whole
API. How each metric combines across processes:

- counters (`ws_dropped_messages_total`) and histograms (`ws_publish_latency_ms`,
  `http_request_duration_seconds`): summed over every process of this start, including
  processes that have died (a counter never goes back when a process is replaced);
- `ws_clients_gauge`: `livesum`, the clients of the processes alive now (the files of a dead
  process are dropped at the next scrape, or at its clean exit);
- the gauges read at scrape time (`backfill_queue_depth`, `backfill_oldest_age_seconds`,
  `policy_version_info`) and the replica gauges are not in the files: the process answering
  the scrape reads or reports them once, so they are never multiplied by the process count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market_data.metrics import CATALOG
from market_data.metrics.catalog import (
    BACKFILL_OLDEST_AGE_SECONDS,
    BACKFILL_QUEUE_DEPTH,
    BACKFILL_WAKEUPS_TOTAL,
    DATABASE_REPLICA_LAG_BYTES,
    DATABASE_REPLICA_LAG_SECONDS,
    DATABASE_REPLICA_SERVING_READS,
    DATABASE_REPLICA_UP,
    MARKET_OPEN,
    POLICY_VERSION_INFO,
    WS_CLIENTS_GAUGE,
    WS_DROPPED_MESSAGES_TOTAL,
    WS_PUBLISH_LATENCY_MS,
)
from market_data.records import Tier

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from litestar import Litestar

    from api.replica import ReplicaMonitor, ReplicaStatus

HTTP_REQUEST_DURATION_SECONDS: Final = "http_request_duration_seconds"
"""API-only helper histogram (not in the catalog): request latency by method, route, status."""

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The multiprocess directory of this process, or None (one process, in-memory registry).

    Raises:
        RuntimeError: the variable was set after prometheus-client was imported, so this
            process keeps its samples in memory where no other process can add them up.
    """
    raw = os.environ.get(MULTIPROC_ENV, "").strip()
    if not raw:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported: set it before the "
            "process starts (python -m api.serve does)"
        )
    return Path(raw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process has the id: not ours, but alive
        return True
    return True


class ScrapeValues(msgspec.Struct, frozen=True, kw_only=True):
    """What the API reads from Postgres when /metrics is scraped."""

    backfill_queue_depth: dict[str, int] = {}
    """Jobs queued or running per tier; tiers left out count as 0."""
    backfill_oldest_age_seconds: dict[str, float] = {}
    """Age of the oldest queued or running job per tier; tiers left out count as 0."""
    policy_version: int | None = None
    """The active policy version (None: no `policy_version_info` sample)."""
    market_open: dict[str, bool] = {}
    """Whether each exchange (MIC) of the active universe is in a trading session now."""


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
        market = GaugeMetricFamily(MARKET_OPEN.name, MARKET_OPEN.help, labels=list(MARKET_OPEN.labels))
        if values is not None:
            for mic, is_open in sorted(values.market_open.items()):
                market.add_metric([mic], 1.0 if is_open else 0.0)
            tiers = [t.value for t in Tier]
            extra = set(values.backfill_queue_depth) | set(values.backfill_oldest_age_seconds)
            tiers += sorted(extra - set(tiers))
            for tier in tiers:
                depth.add_metric([tier], float(values.backfill_queue_depth.get(tier, 0)))
                age.add_metric([tier], float(values.backfill_oldest_age_seconds.get(tier, 0.0)))
            if values.policy_version is not None:
                policy.add_metric([str(values.policy_version)], 1.0)
        return [depth, age, policy, market]


class ReplicaCollector(Collector):
    """The read replica as the process answering the scrape last measured it (`api/replica.py`).

    Every API process measures the same standby every second, so one process's view is the
    API's; reported at scrape time, not from the multiprocess files, so never summed.
    """

    def __init__(self, monitor: ReplicaMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(None)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(self.monitor.status)

    @staticmethod
    def _families(status: ReplicaStatus | None) -> list[GaugeMetricFamily]:
        up, serving, lag_s, lag_b = (
            GaugeMetricFamily(m.name, m.help)
            for m in (
                DATABASE_REPLICA_UP,
                DATABASE_REPLICA_SERVING_READS,
                DATABASE_REPLICA_LAG_SECONDS,
                DATABASE_REPLICA_LAG_BYTES,
            )
        )
        if status is not None:
            up.add_metric([], 1.0 if status.state in ("ok", "behind", "primary_unreachable") else 0.0)
            serving.add_metric([], 1.0 if status.serving_reads else 0.0)
            if status.lag_seconds is not None:
                lag_s.add_metric([], status.lag_seconds)
            if status.lag_bytes is not None:
                lag_b.add_metric([], float(status.lag_bytes))
        return [up, serving, lag_s, lag_b]


class ApiMetrics:
    """The API's metrics in their own CollectorRegistry (one per app: create_app may run twice).

    The API updates `ws_clients`, `ws_publish_latency_ms`, `ws_dropped_messages`,
    `backfill_wakeups` and `http_request_duration_seconds` as things happen; the queue gauges,
    the active policy version and `market_open` come from `source`, awaited by `render()` on
    each scrape. In multiprocess mode (module docstring) `registry` holds no metric objects of
    its own: it collects every process's files and the scrape-time values of this one.
    """

    def __init__(self, source: ScrapeSource | None = None, *, scrape_timeout: float = 2.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.source = source
        self.scrape_timeout = scrape_timeout
        self.content_type: str = CONTENT_TYPE_LATEST
        self.multiprocess_dir = multiprocess_dir()
        # multiprocess: the live metrics write to this process's files, which the collector reads
        own = None if self.multiprocess_dir else self.registry
        self.ws_clients = Gauge(
            WS_CLIENTS_GAUGE.name, WS_CLIENTS_GAUGE.help, registry=own, multiprocess_mode="livesum"
        )
        self.ws_publish_latency_ms = Histogram(
            WS_PUBLISH_LATENCY_MS.name,
            WS_PUBLISH_LATENCY_MS.help,
            buckets=WS_PUBLISH_LATENCY_MS.buckets,
            registry=own,
        )
        self.ws_dropped_messages = Counter(
            WS_DROPPED_MESSAGES_TOTAL.name, WS_DROPPED_MESSAGES_TOTAL.help, registry=own
        )
        self.backfill_wakeups = Counter(
            BACKFILL_WAKEUPS_TOTAL.name,
            BACKFILL_WAKEUPS_TOTAL.help,
            labelnames=BACKFILL_WAKEUPS_TOTAL.labels,
            registry=own,
        )
        self.http_request_duration_seconds = Histogram(
            HTTP_REQUEST_DURATION_SECONDS,
            "HTTP request duration in seconds, by method, route template and status code.",
            labelnames=("method", "route", "status"),
            registry=own,
        )
        if self.multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(self.registry, path=str(self.multiprocess_dir))
        self._scraped = _ScrapeValuesCollector()
        self.registry.register(self._scraped)

    def register(self, collector: Collector) -> None:
        """Add a collector whose values this process reports at scrape time (never summed)."""
        self.registry.register(collector)

    def forget_dead_processes(self) -> list[int]:
        """Drop the live-gauge files of API processes that are gone (killed, so they could not).

        `livesum` counts only live processes, but prometheus-client learns that a process died
        only from `mark_process_dead`; a process killed by a signal never calls it, and the
        supervisor that replaces it is uvicorn's. Returns the process ids dropped.
        """
        if self.multiprocess_dir is None:
            return []
        dead: set[int] = set()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.multiprocess_dir):
                m = _LIVE_GAUGE_FILE.match(entry.name)
                if m and not _alive(int(m.group(1))):
                    dead.add(int(m.group(1)))
        for pid in dead:
            multiprocess.mark_process_dead(pid, str(self.multiprocess_dir))
        return sorted(dead)

    def process_exit(self) -> None:
        """This process stops serving: its clients leave `ws_clients_gauge` (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))

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
        self.forget_dead_processes()
        return self.generate_latest()

    def generate_latest(self) -> bytes:
        """The exposition text with the values last refreshed (no I/O)."""
        return _generate_latest(self.registry)


def build_api_metrics(source: ScrapeSource | None = None, *, scrape_timeout: float = 2.0) -> ApiMetrics:
    """The API's metric objects for every API-side catalog entry, in a fresh registry."""
    return ApiMetrics(source, scrape_timeout=scrape_timeout)


@asynccontextmanager
async def metrics_lifespan(app: Litestar) -> AsyncIterator[None]:
    """At shutdown, this process's WebSocket clients leave the live gauges of the others."""
    try:
        yield
    finally:
        metrics: ApiMetrics = app.state.api_metrics
        metrics.process_exit()


def api_metric_names() -> list[str]:
    """Catalog names the API exposes."""
    return [m.name for m in CATALOG.values() if m.from_api]


__all__ = [
    "HTTP_REQUEST_DURATION_SECONDS",
    "ApiMetrics",
    "ReplicaCollector",
    "ScrapeSource",
    "ScrapeValues",
    "api_metric_names",
    "build_api_metrics",
    "metrics_lifespan",
    "multiprocess_dir",
]
