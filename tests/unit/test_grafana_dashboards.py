"""The Grafana dashboards and their provisioning: valid JSON, known metrics, every catalog metric shown."""

from __future__ import annotations

import json
import re

import yaml

from api.observability.metrics import HTTP_REQUEST_DURATION_SECONDS
from market_data.metrics import CATALOG
from market_data.settings import PROJECT_ROOT
from tests.integration.statsd_packets import mapping_rules

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
    for rule in mapping_rules():
        name = rule["name"]
        if name.startswith("airflow_") and rule.get("action") != "drop" and "$" not in name:
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
    assert files == [
        "data-quality.json",
        "ingestion-quality.json",
        "performance.json",
        "provider-health.json",
        "websocket.json",
    ]
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
