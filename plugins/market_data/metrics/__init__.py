"""The service's metrics: the catalog (`catalog.py`, data) and the statsd emitter of task
processes (`statsd.py`). The API's Prometheus registry lives in `api/observability/metrics.py`.

    from market_data.metrics import CIRCUIT_STATE_VALUES, task_metrics

    task_metrics().gauge("circuit_state", {"provider": "finnhub"}, CIRCUIT_STATE_VALUES["open"])
"""

from __future__ import annotations

from market_data.metrics.catalog import (
    CATALOG,
    CIRCUIT_STATE_VALUES,
    OPERATIONAL,
    EmittedFrom,
    Metric,
    MetricError,
    MetricType,
    lookup,
)
from market_data.metrics.statsd import (
    TaskMetrics,
    sanitize_label_value,
    set_task_metrics,
    statsd_name,
    task_metrics,
)

__all__ = [
    "CATALOG",
    "CIRCUIT_STATE_VALUES",
    "OPERATIONAL",
    "EmittedFrom",
    "Metric",
    "MetricError",
    "MetricType",
    "TaskMetrics",
    "lookup",
    "sanitize_label_value",
    "set_task_metrics",
    "statsd_name",
    "task_metrics",
]
