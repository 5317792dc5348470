"""The statsd packets a real sweep emits: every name lands on a catalog metric with its labels,
through its generated rule in include/statsd/mapping.yml."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from market_data.metrics import set_task_metrics
from tests.conftest import truncate_data
from tests.integration.statsd_packets import StatsdReceiver, land_on_catalog_metric

LOGICAL = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@pytest.fixture
def statsd(monkeypatch):
    receiver = StatsdReceiver()
    monkeypatch.setenv("STATSD_PORT", str(receiver.port))
    set_task_metrics(None)  # rebuilt from the settings (the receiver's port) on first use
    yield receiver
    set_task_metrics(None)
    receiver.close()


def test_a_sweep_emits_only_mapped_catalog_metrics(dagbag, md_dsn, statsd, redis_client) -> None:
    # redis_client: the provider health this sweep shares through Redis is wiped afterwards
    asyncio.run(truncate_data(md_dsn))
    run = dagbag.get_dag("md_sweep_t0").test(logical_date=LOGICAL)
    assert run.state == "success"
    lines = statsd.receive(expected_lines=10, timeout=5)
    ours = [ln for ln in lines if ln.name.startswith("market_data.")]
    assert ours, "the sweep sent no statsd packets"
    seen: set[str] = set()
    for line in ours:
        # a task-side catalog metric, one field per label, its statsd type, its generated rule
        seen.add(land_on_catalog_metric(line).metric.name)
    # what a healthy T0 sweep must report
    assert {
        "provider_selected_total",
        "provider_latency_ms",
        "provider_health_score",
        "circuit_state",
        "jobs_processed_total",
        "write_batch_ms",
        "policy_version_info",
        "registry_shared_state",
    } <= seen, seen
