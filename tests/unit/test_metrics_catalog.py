"""The metric catalog and the statsd emitter's contract."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from market_data import metrics
from market_data.metrics import (
    CATALOG,
    CIRCUIT_STATE_VALUES,
    Metric,
    MetricError,
    TaskMetrics,
    sanitize_label_value,
    set_task_metrics,
    statsd_name,
    task_metrics,
)
from market_data.settings import Settings

# name -> (type, labels, emitted from): the seed's 16 metrics, our three, and five for operating it.
EXPECTED = {
    "provider_selected_total": ("counter", ("capability", "provider"), "task"),
    "provider_errors_total": ("counter", ("provider", "endpoint", "code"), "task"),
    "provider_latency_ms": ("histogram", ("provider", "endpoint"), "task"),
    "circuit_state": ("gauge", ("provider",), "task"),
    "jobs_processed_total": ("counter", ("type", "provider"), "task"),
    "gaps_found_total": ("counter", ("interval",), "task"),
    "ingestion_lag_seconds": ("gauge", ("interval",), "task"),
    "write_batch_ms": ("histogram", (), "task"),
    "backfill_jobs_enqueued_total": ("counter", ("tier",), "task"),
    "backfill_jobs_completed_total": ("counter", ("tier", "status"), "task"),
    # per tier: "oldest T0 backfill older than 15 minutes" needs the tier
    "backfill_queue_depth": ("gauge", ("tier",), "api"),
    "backfill_oldest_age_seconds": ("gauge", ("tier",), "api"),
    "ws_clients_gauge": ("gauge", (), "api"),
    "ws_publish_latency_ms": ("histogram", (), "api"),
    "ws_dropped_messages_total": ("counter", (), "api"),
    "slo_gap_violation_rate": ("gauge", ("tier", "interval"), "task"),
    "provider_health_score": ("gauge", ("provider",), "task"),
    "jobs_rejected_total": ("counter", ("reason",), "task"),
    "policy_version_info": ("gauge", ("version",), "both"),
    # alerts that know the calendar, md_backfill woken by the API, the data-quality dashboard
    "market_open": ("gauge", ("mic",), "api"),
    "backfill_wakeups_total": ("counter", ("outcome",), "api"),
    "slo_expected_bars": ("gauge", ("tier", "interval"), "task"),
    "slo_missing_bars": ("gauge", ("tier", "interval"), "task"),
    "slo_confirmed_empty_bars": ("gauge", ("tier", "interval"), "task"),
}


# --- the catalog ------------------------------------------------------------------------------
def test_catalog_has_the_24_metrics_with_their_types_labels_and_sources() -> None:
    assert len(CATALOG) == 24
    assert {name: (m.type, m.labels, m.emitted_from) for name, m in CATALOG.items()} == EXPECTED


def test_catalog_entries_are_well_formed() -> None:
    for name, m in CATALOG.items():
        assert m.name == name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert m.help and m.help[0].isupper(), name
        assert len(set(m.labels)) == len(m.labels), name
        assert name.endswith("_total") == (m.type == "counter"), name
        if m.type == "histogram":
            assert list(m.buckets) == sorted(set(m.buckets)) and m.buckets, name
            assert name.endswith("_ms")
        else:
            assert m.buckets == (), name


def test_histogram_buckets_resolve_the_slo_thresholds() -> None:
    assert 250.0 in CATALOG["ws_publish_latency_ms"].buckets  # WS publish p99 < 250 ms


def test_entries_are_frozen() -> None:
    with pytest.raises(AttributeError):
        CATALOG["circuit_state"].name = "x"  # type: ignore[misc]


def test_circuit_state_values_order_by_severity() -> None:
    assert CIRCUIT_STATE_VALUES == {"closed": 0.0, "half_open": 1.0, "open": 2.0}


# --- statsd names -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bars:1m", "bars_1m"),
        ("synthetic", "synthetic"),
        ("T0", "T0"),
        ("half-open", "half-open"),
        ("a.b|c:d#e,f=g h", "a_b_c_d_e_f_g_h"),
        ("", "none"),
        (7, "7"),
        ("é", "_"),
        ("x" * 100, "x" * 64),
    ],
)
def test_label_values_are_sanitized(value: object, expected: str) -> None:
    assert sanitize_label_value(value) == expected


def test_statsd_names_put_label_values_in_catalog_order() -> None:
    labels = {"code": "500", "provider": "finnhub", "endpoint": "bars"}
    assert statsd_name("provider_errors_total", labels) == "provider_errors_total.finnhub.bars.500"
    assert statsd_name(CATALOG["provider_selected_total"], {"provider": "p", "capability": "bars:5m"}) == (
        "provider_selected_total.bars_5m.p"
    )
    assert statsd_name("write_batch_ms") == "write_batch_ms"


def test_statsd_globs() -> None:
    assert (
        CATALOG["slo_gap_violation_rate"].statsd_glob("market_data")
        == "market_data.slo_gap_violation_rate.*.*"
    )
    assert CATALOG["write_batch_ms"].statsd_glob("md") == "md.write_batch_ms"


# --- the emitter: programmer errors raise -----------------------------------------------------
@pytest.fixture
def quiet() -> TaskMetrics:
    return TaskMetrics.disabled()


def test_unknown_metric_raises(quiet: TaskMetrics) -> None:
    with pytest.raises(MetricError, match="not in the catalog"):
        quiet.incr("provider_selected", {"capability": "quotes", "provider": "p"})


def test_a_metric_object_not_from_the_catalog_raises(quiet: TaskMetrics) -> None:
    fake = Metric(name="circuit_state", type="gauge", labels=(), help="X", emitted_from="task")
    with pytest.raises(MetricError):
        quiet.gauge(fake, None, 1)


@pytest.mark.parametrize(
    "labels",
    [
        None,
        {},
        {"provider": "p"},
        {"provider": "p", "capability": "quotes", "extra": "x"},
        {"prov": "p", "cap": "q"},
    ],
)
def test_wrong_label_sets_raise(quiet: TaskMetrics, labels: dict[str, str] | None) -> None:
    with pytest.raises(MetricError, match="labels"):
        quiet.incr("provider_selected_total", labels)


def test_labels_on_an_unlabelled_metric_raise(quiet: TaskMetrics) -> None:
    with pytest.raises(MetricError, match="labels"):
        quiet.observe("write_batch_ms", {"tier": "T0"}, 1.0)


@pytest.mark.parametrize(
    ("call", "metric"),
    [("incr", "circuit_state"), ("gauge", "gaps_found_total"), ("observe", "ingestion_lag_seconds")],
)
def test_method_must_fit_the_metric_type(quiet: TaskMetrics, call: str, metric: str) -> None:
    labels = {k: "x" for k in CATALOG[metric].labels}
    with pytest.raises(MetricError, match="is a"):
        if call == "incr":
            quiet.incr(metric, labels)
        else:
            getattr(quiet, call)(metric, labels, 1.0)


def test_api_only_metrics_cannot_be_sent_from_tasks(quiet: TaskMetrics) -> None:
    with pytest.raises(MetricError, match="API"):
        quiet.gauge("backfill_queue_depth", {"tier": "T0"}, 3)


def test_counters_only_go_up(quiet: TaskMetrics) -> None:
    with pytest.raises(MetricError, match="only go up"):
        quiet.incr("gaps_found_total", {"interval": "1m"}, -1)


def test_timer_checks_before_the_block_runs(quiet: TaskMetrics) -> None:
    ran = False
    with pytest.raises(MetricError), quiet.timer("ingestion_lag_seconds", {"interval": "1m"}):
        ran = True
    assert not ran


def test_timer_observes_also_when_the_block_fails(
    monkeypatch: pytest.MonkeyPatch, quiet: TaskMetrics
) -> None:
    seen: list[float] = []
    monkeypatch.setattr(quiet, "observe", lambda metric, labels, value: seen.append(value))
    with pytest.raises(RuntimeError), quiet.timer("write_batch_ms"):
        raise RuntimeError("boom")
    assert len(seen) == 1 and seen[0] >= 0


# --- the emitter: network trouble never raises ------------------------------------------------
def test_unresolvable_host_is_silent_and_retried_later(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def no_dns(*args: object, **kwargs: object) -> list[object]:
        nonlocal calls
        calls += 1
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    emitter = TaskMetrics("statsd-exporter", 9125, "market_data")
    for _ in range(100):
        emitter.incr("gaps_found_total", {"interval": "1m"})
        emitter.gauge("circuit_state", {"provider": "p"}, 2)
    assert calls == 1  # resolved once, then at most once a minute: no DNS per call


def test_send_errors_are_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    emitter = TaskMetrics("127.0.0.1", 9, "market_data")
    client = emitter._client
    assert client is not None

    def broken(*args: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(client, "_send", broken)
    emitter.incr("gaps_found_total", {"interval": "1m"})
    emitter.observe("write_batch_ms", None, 1.0)
    emitter.close()
    emitter.gauge("circuit_state", {"provider": "p"}, 0)  # closed: rebuilt or silent, never raises


def test_disabled_emitter_sends_nothing() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.3)
    try:
        port = receiver.getsockname()[1]
        off = TaskMetrics("127.0.0.1", port, "market_data", enabled=False)
        off.incr("gaps_found_total", {"interval": "1m"})
        assert not off.enabled
        assert not TaskMetrics("127.0.0.1", 0, "market_data").enabled  # STATSD_PORT=0 disables
        with pytest.raises(TimeoutError):
            receiver.recv(100)
    finally:
        receiver.close()


def test_default_emitter_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATSD_PORT", "0")
    set_task_metrics(None)
    try:
        first = task_metrics()
        assert first is task_metrics() and not first.enabled
        replacement = TaskMetrics.disabled()
        set_task_metrics(replacement)
        assert task_metrics() is replacement
    finally:
        set_task_metrics(None)


def test_emitter_from_settings() -> None:
    s = Settings.from_env()
    s = Settings(
        **{**{f: getattr(s, f) for f in s.__struct_fields__}, "statsd_port": 0, "statsd_prefix": "md"}
    )
    emitter = TaskMetrics.from_settings(s)
    assert (emitter.prefix, emitter.enabled) == ("md", False)


def test_module_exports() -> None:
    for name in metrics.__all__:
        assert hasattr(metrics, name)


def test_the_core_does_not_import_prometheus_client() -> None:
    """prometheus-client is the API's (api/observability/metrics.py): no core module pulls it in."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import market_data\n"
        "for m in pkgutil.walk_packages(market_data.__path__, 'market_data.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'prometheus_client'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
