"""The API's Prometheus registry (prometheus-client): the catalog's API-side metrics, with their
names, help and buckets from `market_data.metrics.CATALOG`, plus the HTTP request histogram."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market_data.metrics import CATALOG
from market_data.metrics.catalog import (
    BACKFILL_OLDEST_AGE_SECONDS,
    BACKFILL_QUEUE_DEPTH,
    BACKFILL_WAKEUPS_TOTAL,
    MARKET_OPEN,
    POLICY_VERSION_INFO,
    WS_CLIENTS_GAUGE,
    WS_DROPPED_MESSAGES_TOTAL,
    WS_PUBLISH_LATENCY_MS,
)
from market_data.records import Tier

log = logging.getLogger(__name__)

HTTP_REQUEST_DURATION_SECONDS: Final = "http_request_duration_seconds"
"""API-only helper histogram (not in the catalog): request latency by method, route, status."""


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


class ApiMetrics:
    """The API's metrics in their own CollectorRegistry (one per app: create_app may run twice).

    The API updates `ws_clients`, `ws_publish_latency_ms`, `ws_dropped_messages`,
    `backfill_wakeups` and `http_request_duration_seconds` as things happen; the queue gauges,
    the active policy version and `market_open` come from `source`, awaited by `render()` on
    each scrape.
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
        self.backfill_wakeups = Counter(
            BACKFILL_WAKEUPS_TOTAL.name,
            BACKFILL_WAKEUPS_TOTAL.help,
            labelnames=BACKFILL_WAKEUPS_TOTAL.labels,
            registry=self.registry,
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


__all__ = [
    "HTTP_REQUEST_DURATION_SECONDS",
    "ApiMetrics",
    "ScrapeSource",
    "ScrapeValues",
    "api_metric_names",
    "build_api_metrics",
]
