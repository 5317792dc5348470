"""The metric catalog, the statsd emitter's contract, the API registry and the Grafana dashboards."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
import yaml

from market_data import metrics
from market_data.metrics import (
    CATALOG,
    CIRCUIT_STATE_VALUES,
    HTTP_REQUEST_DURATION_SECONDS,
    Metric,
    MetricError,
    ScrapeValues,
    TaskMetrics,
    build_api_metrics,
    sanitize_label_value,
    set_task_metrics,
    statsd_name,
    task_metrics,
)
from market_data.settings import PROJECT_ROOT, Settings
from tests.integration.statsd_exporter_mapping import StatsdMapping

# name -> (type, labels, emitted from): the seed's 16 metrics plus our three.
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
}


# --- the catalog ------------------------------------------------------------------------------
def test_catalog_has_the_19_metrics_with_their_types_labels_and_sources() -> None:
    assert len(CATALOG) == 19
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


# --- the API registry -------------------------------------------------------------------------
API_METRICS = [m for m in CATALOG.values() if m.from_api]


def exposition_names(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def test_api_registry_exposes_every_api_side_metric_without_a_source() -> None:
    text = build_api_metrics().generate_latest().decode()
    names = exposition_names(text)
    assert {m.name for m in API_METRICS} <= names
    assert HTTP_REQUEST_DURATION_SECONDS in names
    for m in API_METRICS:
        assert f"# TYPE {m.name} {m.type}" in text


def test_api_registry_reads_scrape_values_on_render() -> None:
    calls = 0

    async def source() -> ScrapeValues:
        nonlocal calls
        calls += 1
        return ScrapeValues(
            backfill_queue_depth={"T0": 12, "T2": 3},
            backfill_oldest_age_seconds={"T0": 901.5},
            policy_version=4,
        )

    api = build_api_metrics(source)
    api.ws_clients.inc(2)
    api.ws_publish_latency_ms.observe(120.0)
    api.ws_dropped_messages.inc()
    api.http_request_duration_seconds.labels("GET", "/stocks/{symbol}/price", "200").observe(0.012)
    text = asyncio.run(api.render()).decode()
    assert calls == 1
    for line in [
        'backfill_queue_depth{tier="T0"} 12.0',
        'backfill_queue_depth{tier="T1"} 0.0',
        'backfill_queue_depth{tier="T2"} 3.0',
        'backfill_oldest_age_seconds{tier="T0"} 901.5',
        'backfill_oldest_age_seconds{tier="T1"} 0.0',
        'policy_version_info{version="4"} 1.0',
        "ws_clients_gauge 2.0",
        'ws_publish_latency_ms_bucket{le="250.0"} 1.0',
        "ws_dropped_messages_total 1.0",
        'http_request_duration_seconds_count{method="GET",route="/stocks/{symbol}/price",status="200"} 1.0',
    ]:
        assert line in text, line


@pytest.mark.parametrize("failure", ["raises", "hangs"])
def test_a_failing_source_leaves_the_queue_samples_out(failure: str) -> None:
    async def source() -> ScrapeValues:
        if failure == "raises":
            raise ConnectionError("postgres is down")
        await asyncio.sleep(10)
        return ScrapeValues()

    api = build_api_metrics(source, scrape_timeout=0.05)
    text = asyncio.run(api.render()).decode()
    assert {m.name for m in API_METRICS} <= exposition_names(text)
    assert "backfill_queue_depth{" not in text and "policy_version_info{" not in text


def test_each_app_gets_its_own_registry() -> None:
    a, b = build_api_metrics(), build_api_metrics()
    a.ws_clients.inc()
    assert a.registry is not b.registry
    assert "ws_clients_gauge 0.0" in b.generate_latest().decode()


# --- Grafana dashboards -----------------------------------------------------------------------
DASHBOARDS = PROJECT_ROOT / "include" / "grafana" / "dashboards"
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "le", "quantile",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords or labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = m.group(0)
        following = text[m.end() :].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if text[max(0, m.start() - 1) : m.start()].isdigit():
            continue  # the unit of a duration such as 5m
        names.add(word)
    return names


def allowed_metric_names() -> set[str]:
    allowed = {"up"}
    for m in CATALOG.values():
        allowed.add(m.name)
        if m.type == "histogram":
            allowed |= {f"{m.name}_bucket", f"{m.name}_sum", f"{m.name}_count"}
    for base in [HTTP_REQUEST_DURATION_SECONDS]:
        allowed |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    # Airflow's metrics as include/statsd/mapping.yml names them (summaries add _sum/_count)
    for name in StatsdMapping(PROJECT_ROOT / "include" / "statsd" / "mapping.yml").output_names():
        if name.startswith("airflow_"):
            allowed |= {name, f"{name}_sum", f"{name}_count"}
    rules = yaml.safe_load((PROJECT_ROOT / "include" / "prometheus" / "alerts.yml").read_text())
    allowed |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    return allowed


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and q:
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
            queries.append(m.group(1) if m else q)
    return queries


def test_promql_metric_names_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, provider) (rate(provider_latency_ms_bucket{provider=~"$p"}'
        "[$__rate_interval]))) / on() group_left max(up offset 5m) > bool 1e3"
    )
    assert promql_metric_names(expr) == {"provider_latency_ms_bucket", "up"}


def test_dashboards_exist_and_are_valid_grafana_json() -> None:
    files = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert files == ["ingestion-quality.json", "performance.json", "provider-health.json", "websocket.json"]
    uids = set()
    for path in DASHBOARDS.glob("*.json"):
        d = json.loads(path.read_text())
        assert d["uid"] not in uids and len(d["uid"]) <= 40
        uids.add(d["uid"])
        assert d["title"] and d["panels"] and isinstance(d["schemaVersion"], int)
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for p in d["panels"]:
            assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, (path.name, p["title"])
            assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            assert p["targets"], (path.name, p["title"])
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])


def test_dashboards_query_only_known_metrics() -> None:
    allowed = allowed_metric_names()
    used: set[str] = set()
    for path in DASHBOARDS.glob("*.json"):
        for expr in dashboard_queries(json.loads(path.read_text())):
            names = promql_metric_names(expr)
            assert names, (path.name, expr)
            assert names <= allowed, f"{path.name}: {sorted(names - allowed)} in {expr!r}"
            used |= names
    # every catalog metric is on some dashboard
    for m in CATALOG.values():
        assert used & {m.name, f"{m.name}_bucket", f"{m.name}_count"}, m.name


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    prov = PROJECT_ROOT / "include" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in ds] == [
        ("prometheus", "prometheus", "http://prometheus:9090")
    ]
    providers = yaml.safe_load((prov / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())["services"]
    assert "./include/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["grafana"]["volumes"]
    assert "./include/grafana/provisioning:/etc/grafana/provisioning:ro" in compose["grafana"]["volumes"]
    assert "./include/prometheus:/etc/prometheus:ro" in compose["prometheus"]["volumes"]
    assert any(str(v).endswith(":/etc/statsd/mapping.yml:ro") for v in compose["statsd-exporter"]["volumes"])


def test_module_exports() -> None:
    for name in metrics.__all__:
        assert hasattr(metrics, name)
