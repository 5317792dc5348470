"""Statsd from task processes -> include/statsd/mapping.yml -> the catalog's Prometheus names.

The catalog part of the mapping file is generated from the catalog (`python -m market_data.cli
statsd-mapping`); the committed file must equal what the catalog generates. Every task-side
catalog metric is emitted through the real emitter (`task_metrics()`, built from
STATSD_HOST/PORT/PREFIX) into a UDP socket on 127.0.0.1; each received line must follow the
emitter's scheme for its catalog metric and have that metric's generated rule in the file.
Airflow's hand-written rules are checked as a table and for what statsd_exporter refuses at load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from market_data.cli import main as cli
from market_data.metrics import (
    CATALOG,
    OPERATIONAL,
    Metric,
    sanitize_label_value,
    set_task_metrics,
    task_metrics,
)
from market_data.metrics.statsd_mapping import (
    BEGIN_MARKER,
    END_MARKER,
    STATSD_METRIC_TYPE,
    task_side_metrics,
    with_generated_part,
)
from tests.integration.statsd_packets import (
    MAPPING_FILE,
    PREFIX,
    StatsdReceiver,
    land_on_catalog_metric,
    mapping_rules,
)

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
TASK_METRICS = [m for m in (*CATALOG.values(), *OPERATIONAL.values()) if m.from_task]
"""The catalog metrics that tasks send, plus the operational ones (registry_shared_state)."""

# What statsd_exporter checks when it loads a mapping file (pkg/mapper): a file failing these
# would keep the exporter from starting.
_STATSD_FIELD = r"[a-zA-Z_](-?[a-zA-Z0-9_])+"
GLOB_MATCH_RE = re.compile(rf"^(\*\.|{_STATSD_FIELD}\.)+(\*|{_STATSD_FIELD})$")
_TEMPLATE = r"(\$\{?\d+\}?)"
METRIC_NAME_RE = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return mapping_rules()


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


# --- generated from the catalog -----------------------------------------------------------------
def test_the_committed_mapping_is_what_the_catalog_generates() -> None:
    text = MAPPING_FILE.read_text()
    assert with_generated_part(text, PREFIX) == text, (
        "include/statsd/mapping.yml differs from the metric catalog: "
        "run `python -m market_data.cli statsd-mapping`"
    )


def test_the_mapping_command_rewrites_a_stale_file_and_check_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = MAPPING_FILE.read_text()
    stale = tmp_path / "mapping.yml"
    # a rule removed from the generated part, as if a metric were added to the catalog
    stale.write_text(committed.replace("ttl: 1h\n", "", 1))
    assert cli(["statsd-mapping", "--check", "--file", str(stale), "--prefix", PREFIX]) == 1
    assert stale.read_text() != committed  # --check writes nothing
    assert cli(["statsd-mapping", "--file", str(stale), "--prefix", PREFIX]) == 0
    assert stale.read_text() == committed
    assert cli(["statsd-mapping", "--check", "--file", str(stale), "--prefix", PREFIX]) == 0
    stale.write_text(committed.replace(END_MARKER + "\n", ""))
    assert cli(["statsd-mapping", "--file", str(stale), "--prefix", PREFIX]) == 2
    assert "END generated" in capsys.readouterr().err


def test_the_generated_part_follows_the_prefix() -> None:
    text = with_generated_part(MAPPING_FILE.read_text(), "md")
    assert "  - match: md.provider_latency_ms.*.*\n" in text
    assert "market_data.provider_latency_ms" not in text


# --- the lines tasks send ------------------------------------------------------------------------
def test_every_task_metric_emitted_lands_on_its_catalog_metric(receiver: StatsdReceiver) -> None:
    assert len(TASK_METRICS) == 18  # 17 of the catalog (slo_*_bars included) + registry_shared_state
    for m in TASK_METRICS:
        emit_sample(m)
    lines = receiver.receive(expected_lines=len(TASK_METRICS))
    assert len(lines) == len(TASK_METRICS), lines

    seen = set()
    for line in lines:
        sample = land_on_catalog_metric(line)
        assert sample.labels == {k: sanitize_label_value(SAMPLE_LABELS[k]) for k in sample.metric.labels}
        assert line.value == pytest.approx(SAMPLE_VALUE[sample.metric.type])
        seen.add(sample.metric.name)
    assert seen == {m.name for m in TASK_METRICS}


def test_label_values_are_sanitized_into_one_field(receiver: StatsdReceiver) -> None:
    task_metrics().incr(
        "provider_errors_total", {"provider": "we.ird:na|me#x,y=z", "endpoint": "", "code": "Server Error"}
    )
    (line,) = receiver.receive(expected_lines=1)
    assert line.name == "market_data.provider_errors_total.we_ird_na_me_x_y_z.none.Server_Error"
    sample = land_on_catalog_metric(line)
    assert (sample.metric.name, sample.labels) == (
        "provider_errors_total",
        {"provider": "we_ird_na_me_x_y_z", "endpoint": "none", "code": "Server_Error"},
    )


def test_histograms_keep_milliseconds_and_timer_observes(receiver: StatsdReceiver) -> None:
    # `|ms` would be divided by 1000 by statsd_exporter; `|h` is kept as sent.
    with task_metrics().timer("write_batch_ms"):
        pass
    (line,) = receiver.receive(expected_lines=1)
    assert (line.name, line.type) == ("market_data.write_batch_ms", "h")
    assert 0 <= line.value < 1000
    assert land_on_catalog_metric(line).metric.name == "write_batch_ms"


# --- the catalog's rules -------------------------------------------------------------------------
def test_each_task_metric_has_exactly_one_rule_of_its_type(rules: list[dict[str, Any]]) -> None:
    ours = [r for r in rules if str(r["match"]).startswith(f"{PREFIX}.")]
    assert sorted(r["name"] for r in ours) == sorted(m.name for m in TASK_METRICS)
    assert [m.name for m in task_side_metrics()] == [m.name for m in TASK_METRICS]
    for rule in ours:
        m = CATALOG.get(rule["name"]) or OPERATIONAL[rule["name"]]
        assert rule["match"] == m.statsd_glob(PREFIX)
        assert rule.get("match_type", "glob") == "glob" and rule.get("action", "map") == "map"
        assert (rule.get("labels") or {}) == {label: f"${i}" for i, label in enumerate(m.labels, 1)}
        # a line of another statsd type (a counter named like a gauge) does not land on it
        assert rule["match_metric_type"] == STATSD_METRIC_TYPE[m.type], rule["name"]
        assert rule["help"] == m.help, f"help of {m.name} differs from the catalog"
        assert rule.get("ttl", "") == m.statsd_ttl
        if m.type == "histogram":
            assert rule["observer_type"] == "histogram"
            buckets = tuple(float(b) for b in rule["histogram_options"]["buckets"])
            assert buckets == m.buckets, f"buckets of {m.name} differ from the catalog"
        else:
            assert "observer_type" not in rule and "histogram_options" not in rule
    assert CATALOG["policy_version_info"].statsd_ttl == "1h"  # versions no task reports expire


def test_catalog_rules_come_first_and_no_other_rule_takes_our_prefix(rules: list[dict[str, Any]]) -> None:
    """statsd_exporter tries globs in file order, regexes after them: nothing can shadow ours."""
    text = MAPPING_FILE.read_text()
    assert text.index(BEGIN_MARKER) < text.index(END_MARKER) < text.index("  - match: airflow.")
    generated = len(TASK_METRICS)
    assert all(str(r["match"]).startswith(f"{PREFIX}.") for r in rules[:generated])
    for r in rules[generated:]:
        assert not str(r["match"]).startswith(PREFIX), r
        if r.get("match_type") == "regex":
            assert not re.search(r["match"], f"{PREFIX}.provider_latency_ms.synthetic.bars"), r


def test_api_only_metrics_have_no_statsd_rule(rules: list[dict[str, Any]]) -> None:
    api_only = {m.name for m in CATALOG.values() if m.emitted_from == "api"}
    assert api_only and not api_only & {r["name"] for r in rules}


# --- the whole file, as statsd_exporter loads it ------------------------------------------------
def test_every_rule_would_load_in_statsd_exporter(rules: list[dict[str, Any]]) -> None:
    for r in rules:
        assert r.get("name") and METRIC_NAME_RE.match(r["name"]), r
        assert all(LABEL_NAME_RE.match(str(k)) for k in (r.get("labels") or {})), r
        if r.get("match_type", "glob") == "glob":
            assert GLOB_MATCH_RE.match(str(r["match"])), r
        else:
            assert r["match_type"] == "regex"
            re.compile(r["match"])


def test_no_two_rules_share_a_match(rules: list[dict[str, Any]]) -> None:
    matches = [(r["match"], r.get("match_metric_type")) for r in rules]
    assert len(matches) == len(set(matches))


def test_one_label_set_per_exported_name(rules: list[dict[str, Any]]) -> None:
    """statsd_exporter rejects a name seen with two different label sets."""
    label_sets: dict[str, set[str]] = {}
    for rule in rules:
        if rule.get("action") == "drop":
            continue
        keys = set(rule.get("labels") or {})
        assert label_sets.setdefault(rule["name"], keys) == keys, rule["name"]


# --- Airflow's rules (hand-written) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("match", "name", "labels"),
    [
        ("airflow.pool.open_slots.*", "airflow_pool_open_slots", {"pool": "$1"}),
        ("airflow.pool.starving_tasks.*", "airflow_pool_starving_tasks", {"pool": "$1"}),
        ("airflow.pool.running_slots.*", "airflow_pool_running_slots", {"pool": "$1"}),
        ("airflow.dag.*.*.duration", "airflow_task_duration", {"dag_id": "$1", "task_id": "$2"}),
        ("airflow.dagrun.duration.success.*", "airflow_dagrun_duration", {"dag_id": "$1"}),
        ("airflow.dagrun.duration.failed.*", "airflow_dagrun_failed", {"dag_id": "$1"}),
        ("airflow.dagrun.schedule_delay.*", "airflow_dagrun_schedule_delay", {"dag_id": "$1"}),
        ("airflow.scheduler_heartbeat", "airflow_scheduler_heartbeat", {"type": "counter"}),
        ("airflow.operator_failures_(.*)", "airflow_operator_failures", {"operator": "$1"}),
        ("airflow.executor.open_slots.*", "airflow_executor_open_slots", {"executor": "$1"}),
        (
            "airflow.ti.running.*.*.*",
            "airflow_ti_running",
            {"queue": "$1", "dag_id": "$2", "task_id": "$3"},
        ),
        (
            "airflow.ti.finish.*.*.*",
            "airflow_ti_finish",
            {"dag_id": "$1", "task_id": "$2", "state": "$3"},
        ),
    ],
)
def test_airflow_metrics_map_like_the_official_chart(
    rules: list[dict[str, Any]], match: str, name: str, labels: dict[str, str]
) -> None:
    (rule,) = [r for r in rules if r["match"] == match]
    assert (rule["name"], rule.get("labels") or {}, rule.get("action", "map")) == (name, labels, "map")


def test_airflow_metrics_without_a_rule_keep_their_dotted_name() -> None:
    # exported as airflow_scheduler_tasks_starving: no rule may claim airflow.scheduler.*
    assert "airflow.scheduler." not in MAPPING_FILE.read_text()


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
    rules: list[dict[str, Any]], statsd_name: str
) -> None:
    (rule,) = [r for r in rules if r["match"] == statsd_name]
    assert rule.get("action") == "drop" and rule.get("match_type", "glob") == "glob"
