"""Statsd from task processes -> include/statsd/mapping.yml -> the catalog's Prometheus names.

Every task-side catalog metric is emitted through the real emitter (`task_metrics()`, built
from STATSD_HOST/PORT/PREFIX) into a UDP socket on 127.0.0.1; each received line must be
matched by the mapping and land on its catalog metric with the right labels.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from market_data.metrics import (
    CATALOG,
    OPERATIONAL,
    Metric,
    sanitize_label_value,
    set_task_metrics,
    task_metrics,
)
from market_data.settings import PROJECT_ROOT
from tests.integration.statsd_exporter_mapping import StatsdMapping, StatsdReceiver

MAPPING_FILE = PROJECT_ROOT / "include" / "statsd" / "mapping.yml"
PREFIX = "market_data"

# One realistic value per label name; some need sanitizing on the way.
SAMPLE_LABELS: dict[str, object] = {
    "capability": "bars:1m",
    "provider": "synthetic",
    "endpoint": "bars",
    "code": "429",
    "type": "bars",
    "interval": "1m",
    "tier": "T0",
    "status": "dead",
    "reason": "missing_field",
    "version": 7,
    "component": "health",
}
SAMPLE_COUNT = 3
SAMPLE_VALUE: dict[str, float] = {"counter": SAMPLE_COUNT, "gauge": 0.25, "histogram": 182.5}
EXPECTED_STATSD_TYPE = {"counter": "c", "gauge": "g", "histogram": "h"}
TASK_METRICS = [m for m in (*CATALOG.values(), *OPERATIONAL.values()) if m.from_task]
"""The 19 of the catalog that tasks send, plus the operational ones (registry_shared_state)."""


@pytest.fixture(scope="module")
def mapping() -> StatsdMapping:
    return StatsdMapping(MAPPING_FILE)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdReceiver]:
    """A statsd receiver; the process's default emitter is rebuilt to send to it."""
    r = StatsdReceiver()
    monkeypatch.setenv("STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("STATSD_PORT", str(r.port))
    monkeypatch.setenv("STATSD_PREFIX", PREFIX)
    set_task_metrics(None)
    try:
        yield r
    finally:
        set_task_metrics(None)
        r.close()


def emit_sample(m: Metric) -> None:
    labels = {name: SAMPLE_LABELS[name] for name in m.labels}
    emitter = task_metrics()
    if m.type == "counter":
        emitter.incr(m.name, labels, SAMPLE_COUNT)
    elif m.type == "gauge":
        emitter.gauge(m.name, labels, SAMPLE_VALUE["gauge"])
    else:
        emitter.observe(m.name, labels, SAMPLE_VALUE["histogram"])


def test_every_task_metric_emitted_lands_on_its_catalog_metric(
    receiver: StatsdReceiver, mapping: StatsdMapping
) -> None:
    assert len(TASK_METRICS) == 15  # 14 of the catalog + registry_shared_state
    for m in TASK_METRICS:
        emit_sample(m)
    lines = receiver.receive(expected_lines=len(TASK_METRICS))
    assert len(lines) == len(TASK_METRICS), lines

    seen = set()
    for line in lines:
        mapped = mapping.map(line.name, line.type)
        assert mapped.rule is not None, f"{line.name} is not matched by {MAPPING_FILE.name}"
        assert not mapped.dropped, line.name
        found = CATALOG.get(mapped.name) or OPERATIONAL.get(mapped.name)
        assert found is not None and found.from_task, (
            f"{line.name} maps to {mapped.name}, not a task-side catalog metric"
        )
        assert line.name.startswith(f"{PREFIX}.{found.name}")
        assert mapped.labels == {k: sanitize_label_value(SAMPLE_LABELS[k]) for k in found.labels}
        assert line.type == EXPECTED_STATSD_TYPE[found.type], f"{found.name} sent as |{line.type}"
        assert line.value == pytest.approx(SAMPLE_VALUE[found.type])
        seen.add(found.name)
    assert seen == {m.name for m in TASK_METRICS}


def test_label_values_are_sanitized_into_one_field(receiver: StatsdReceiver, mapping: StatsdMapping) -> None:
    task_metrics().incr(
        "provider_errors_total", {"provider": "we.ird:na|me#x,y=z", "endpoint": "", "code": "Server Error"}
    )
    (line,) = receiver.receive(expected_lines=1)
    assert line.name == "market_data.provider_errors_total.we_ird_na_me_x_y_z.none.Server_Error"
    mapped = mapping.map(line.name, line.type)
    assert (mapped.name, mapped.labels) == (
        "provider_errors_total",
        {"provider": "we_ird_na_me_x_y_z", "endpoint": "none", "code": "Server_Error"},
    )


def test_histograms_keep_milliseconds_and_timer_observes(
    receiver: StatsdReceiver, mapping: StatsdMapping
) -> None:
    # `|ms` would be divided by 1000 by statsd_exporter; `|h` is kept as sent.
    with task_metrics().timer("write_batch_ms"):
        pass
    (line,) = receiver.receive(expected_lines=1)
    assert (line.name, line.type) == ("market_data.write_batch_ms", "h")
    assert 0 <= line.value < 1000
    assert mapping.map(line.name, "h").name == "write_batch_ms"


def test_each_task_metric_has_exactly_one_rule_of_its_type(mapping: StatsdMapping) -> None:
    ours = [r for r in mapping.rules if r.match.startswith(f"{PREFIX}.")]
    assert sorted(r.name for r in ours) == sorted(m.name for m in TASK_METRICS)
    for rule in ours:
        m = CATALOG.get(rule.name) or OPERATIONAL[rule.name]
        assert rule.match == m.statsd_glob(PREFIX)
        assert rule.match_type == "glob" and rule.action == "map"
        assert rule.labels == {label: f"${i}" for i, label in enumerate(m.labels, 1)}
        expected_type = {"counter": "counter", "gauge": "gauge", "histogram": "observer"}[m.type]
        assert rule.match_metric_type == expected_type, rule.name
        assert rule.help == m.help, f"help of {m.name} differs from the catalog"
        if m.type == "histogram":
            assert rule.observer_type == "histogram"
            assert rule.buckets == m.buckets, f"buckets of {m.name} differ from the catalog"
        else:
            assert rule.observer_type is None and not rule.buckets


def test_wrong_statsd_type_does_not_land_on_a_catalog_metric(mapping: StatsdMapping) -> None:
    mapped = mapping.map("market_data.circuit_state.finnhub", "c")
    assert mapped.rule is None and mapped.name == "market_data_circuit_state_finnhub"


def test_api_only_metrics_have_no_statsd_rule(mapping: StatsdMapping) -> None:
    api_only = {m.name for m in CATALOG.values() if m.emitted_from == "api"}
    assert api_only and not api_only & {r.name for r in mapping.rules}


@pytest.mark.parametrize(
    ("statsd_name", "statsd_type", "name", "labels"),
    [
        (
            "airflow.pool.open_slots.provider_synthetic",
            "g",
            "airflow_pool_open_slots",
            {"pool": "provider_synthetic"},
        ),
        (
            "airflow.pool.starving_tasks.default_pool",
            "g",
            "airflow_pool_starving_tasks",
            {"pool": "default_pool"},
        ),
        (
            "airflow.pool.running_slots.provider_synthetic",
            "g",
            "airflow_pool_running_slots",
            {"pool": "provider_synthetic"},
        ),
        (
            "airflow.dag.md_sweep_t0.run_batch.duration",
            "ms",
            "airflow_task_duration",
            {"dag_id": "md_sweep_t0", "task_id": "run_batch"},
        ),
        (
            "airflow.dagrun.duration.success.md_sweep_t0",
            "ms",
            "airflow_dagrun_duration",
            {"dag_id": "md_sweep_t0"},
        ),
        (
            "airflow.dagrun.duration.failed.md_backfill",
            "ms",
            "airflow_dagrun_failed",
            {"dag_id": "md_backfill"},
        ),
        (
            "airflow.dagrun.schedule_delay.md_sweep_t0",
            "ms",
            "airflow_dagrun_schedule_delay",
            {"dag_id": "md_sweep_t0"},
        ),
        ("airflow.scheduler_heartbeat", "c", "airflow_scheduler_heartbeat", {"type": "counter"}),
        (
            "airflow.operator_failures_PythonOperator",
            "c",
            "airflow_operator_failures",
            {"operator": "PythonOperator"},
        ),
        (
            "airflow.executor.open_slots.LocalExecutor",
            "g",
            "airflow_executor_open_slots",
            {"executor": "LocalExecutor"},
        ),
        (
            "airflow.ti.running.default.md_sweep_t0.run_batch",
            "g",
            "airflow_ti_running",
            {"queue": "default", "dag_id": "md_sweep_t0", "task_id": "run_batch"},
        ),
        (
            "airflow.ti.finish.md_backfill.run_batch.failed",
            "c",
            "airflow_ti_finish",
            {"dag_id": "md_backfill", "task_id": "run_batch", "state": "failed"},
        ),
        # not mapped: exported with dots as underscores
        ("airflow.scheduler.tasks.starving", "g", "airflow_scheduler_tasks_starving", {}),
    ],
)
def test_airflow_metrics_map_like_the_official_chart(
    mapping: StatsdMapping, statsd_name: str, statsd_type: str, name: str, labels: dict[str, str]
) -> None:
    mapped = mapping.map(statsd_name, statsd_type)
    assert (mapped.name, mapped.labels, mapped.dropped) == (name, labels, False)


@pytest.mark.parametrize(
    "statsd_name",
    [
        "airflow.pool.open_slots",
        "airflow.task.duration",
        "airflow.ti.finish",
        "airflow.executor.running_tasks",
    ],
)
def test_airflow3_untagged_twins_of_mapped_metrics_are_dropped(
    mapping: StatsdMapping, statsd_name: str
) -> None:
    assert mapping.map(statsd_name, "g" if "slots" in statsd_name or "tasks" in statsd_name else "c").dropped


def test_one_label_set_per_exported_name(mapping: StatsdMapping) -> None:
    """statsd_exporter rejects a name seen with two different label sets."""
    label_sets: dict[str, set[str]] = {}
    for rule in mapping.rules:
        if rule.action == "drop":
            continue
        keys = set(rule.labels)
        assert label_sets.setdefault(rule.name, keys) == keys, rule.name
