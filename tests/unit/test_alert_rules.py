"""Prometheus config and alert rules: promtool checks, promtool unit tests, runbook links, the
calendar behind `market_open`, and the Alertmanager configuration.

promtool (and amtool) come from Debian's `prometheus` (and `prometheus-alertmanager`) packages;
`./dev test` installs them when missing. These tests fail (never skip) without them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from market_data.metrics import CATALOG
from market_data.settings import PROJECT_ROOT
from tests.unit.test_grafana_dashboards import DASHBOARDS, dashboard_queries, promql_metric_names

PROM_DIR = PROJECT_ROOT / "include" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = ["alerts_test.yml", "alerts_calendar_test.yml"]
README = PROJECT_ROOT / "README.md"
ALERTMANAGER = PROJECT_ROOT / "include" / "alertmanager" / "alertmanager.yml"

REQUIRED_ALERTS = {
    # the predecessor's four SLO alerts
    "SLOGapViolationHighT0",
    "BackfillOldestTooOldT0",
    "ProviderErrorSpike",
    "NoWSClientsDuringRTH",
    # SLO table: cost safety (zero bans) and WS publish latency
    "ProviderBanned",
    "WSPublishLatencyHigh",
    # the additions
    "IngestionLagHigh",
    "ProviderBreakerOpen",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found. It ships in Debian's `prometheus` package: `./dev test` installs it "
            "(as root on Debian), or run `apt-get install prometheus`."
        )
    return path


def run(promtool: str, *args: str, cwd: Path = PROM_DIR) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def alert_rules() -> dict[str, dict]:
    return {r["alert"]: r for r in load_rules() if "alert" in r}


def test_prometheus_config_is_valid(promtool: str) -> None:
    out = run(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS" in out


def test_rule_file_is_valid(promtool: str) -> None:
    out = run(promtool, "check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(load_rules())} rules found" in out


def test_promtool_unit_tests_pass(promtool: str) -> None:
    out = run(promtool, "test", "rules", *RULE_TESTS)
    assert out.count("SUCCESS") == len(RULE_TESTS), out


def test_prometheus_scrapes_every_api_replica_and_the_exporter_and_alerts_through_alertmanager() -> None:
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    # every replica of the compose `api` service: Docker's DNS answers its name with all of them
    (api,) = jobs["market-data-api"]["dns_sd_configs"]
    assert (api["names"], api["type"], api["port"]) == (["api"], "A", 8001)
    assert "static_configs" not in jobs["market-data-api"]
    targets = [t for sc in jobs["statsd-exporter"]["static_configs"] for t in sc["targets"]]
    assert targets == ["statsd-exporter:9102"]
    assert cfg["rule_files"] == ["alerts.yml"]
    managers = [
        t for m in cfg["alerting"]["alertmanagers"] for sc in m["static_configs"] for t in sc["targets"]
    ]
    assert managers == ["alertmanager:9093"]
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())["services"]
    assert "9093:9093" in compose["alertmanager"]["ports"]
    assert "./include/alertmanager:/etc/alertmanager:ro" in compose["alertmanager"]["volumes"]
    assert "alertmanager" in compose["prometheus"]["depends_on"]


def runbook_base_url() -> str:
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    return str(cfg["global"]["external_labels"]["runbook_base_url"])


def test_required_alerts_exist_with_severity_and_an_absolute_runbook_link() -> None:
    alerts = alert_rules()
    assert set(alerts) == REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["runbook_url"] == (
            "{{ $externalLabels.runbook_base_url }}#runbook-" + name.lower()
        )
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert re.fullmatch(r"https?://[^\s#]+/README\.md", runbook_base_url())


def test_every_rule_test_group_renders_the_runbook_links_with_the_servers_external_label() -> None:
    base = runbook_base_url()
    for name in RULE_TESTS:
        for group in yaml.safe_load((PROM_DIR / name).read_text())["tests"]:
            assert group["external_labels"] == {"runbook_base_url": base}, (name, group["name"])
            for case in group.get("alert_rule_test", []):
                for alert in case.get("exp_alerts", []):
                    url = alert["exp_annotations"]["runbook_url"]
                    assert url == f"{base}#runbook-{case['alertname'].lower()}", (name, url)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_runbook_link_has_a_readme_section() -> None:
    headings = re.findall(r"^#{2,4} (.+)$", README.read_text(), flags=re.MULTILINE)
    anchors = {github_anchor(h) for h in headings}
    for name, rule in alert_rules().items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"README.md has no section for {name} (#{anchor})"


def test_alert_expressions_read_only_catalog_metrics_and_recorded_series() -> None:
    known = set(CATALOG)
    for m in CATALOG.values():
        if m.type == "histogram":
            known |= {f"{m.name}_bucket", f"{m.name}_count", f"{m.name}_sum"}
    known |= {r["record"] for r in load_rules() if "record" in r}
    for rule in load_rules():
        names = promql_metric_names(rule["expr"])
        assert names <= known, f"{rule.get('alert') or rule.get('record')}: {sorted(names - known)}"


def test_every_alert_has_a_firing_case_and_a_must_not_fire_case() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for name in RULE_TESTS:
        doc = yaml.safe_load((PROM_DIR / name).read_text())
        assert doc["rule_files"] == ["alerts.yml"]
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert fires == REQUIRED_ALERTS
    assert silent == REQUIRED_ALERTS


# --- the calendar behind market_open ---------------------------------------------------------
def test_the_calendar_rule_tests_are_what_the_exchange_calendars_give() -> None:
    """alerts_calendar_test.yml is generated (python -m market_data.cli alert-tests)."""
    from market_data.metrics.alert_tests import RULE_TEST_FILE, rule_tests

    assert (PROM_DIR / RULE_TEST_FILE).read_text() == rule_tests(PROM_DIR), (
        "regenerate it: python -m market_data.cli alert-tests"
    )


def test_the_calendar_rule_tests_cover_a_holiday_an_early_close_and_a_normal_session() -> None:
    from market_data.metrics.alert_tests import ALERT

    groups = {
        g["name"].split(",")[0]: g
        for g in yaml.safe_load((PROM_DIR / "alerts_calendar_test.yml").read_text())["tests"]
    }

    def firing(day: str, clients: bool = False) -> list[str]:
        group = next(
            g
            for g in yaml.safe_load((PROM_DIR / "alerts_calendar_test.yml").read_text())["tests"]
            if g["name"].startswith(day) and ("client connected" in g["name"]) == clients
        )
        assert all(case["alertname"] == ALERT for case in group["alert_rule_test"])
        return [case["eval_time"] for case in group["alert_rule_test"] if case["exp_alerts"]]

    assert set(groups) == {"2026-11-24", "2026-11-26", "2026-11-27"}
    assert firing("2026-11-26") == []  # Thanksgiving
    black_friday = firing("2026-11-27")  # closes 13:00 New York time = 18:00 UTC
    assert black_friday[0] == "14h40m" and black_friday[-1] == "17h55m"
    tuesday = firing("2026-11-24")  # 09:30-16:00 New York time = 14:30-21:00 UTC
    assert tuesday[0] == "14h40m" and tuesday[-1] == "20h55m" and "20h0m" in tuesday
    assert firing("2026-11-24", clients=True) == []


@pytest.mark.parametrize(
    "mic,at,is_open",
    [
        ("XNYS", "2026-11-26T15:00:00Z", False),  # Thanksgiving
        ("XLON", "2026-11-26T15:00:00Z", True),  # London trades on US Thanksgiving
        ("XNYS", "2026-11-27T17:59:00Z", True),  # day after Thanksgiving, 12:59 New York
        ("XNYS", "2026-11-27T18:00:00Z", False),  # ... closed from 13:00
        ("XNYS", "2026-11-24T14:29:00Z", False),  # 09:29 EST
        ("XNYS", "2026-11-24T14:30:00Z", True),  # 09:30 EST
        ("XNYS", "2026-11-24T20:59:00Z", True),
        ("XNYS", "2026-11-24T21:00:00Z", False),  # 16:00 EST
        ("XNYS", "2026-03-09T13:30:00Z", True),  # 09:30 EDT, the day after the DST change
        ("XNYS", "2026-03-06T13:30:00Z", False),  # 08:30 EST, the Friday before
        ("XNYS", "2026-11-28T15:00:00Z", False),  # Saturday
        ("XTKS", "2026-11-24T02:29:00Z", True),  # 11:29 Tokyo
        ("XTKS", "2026-11-24T02:30:00Z", False),  # lunch break 11:30-12:30 Tokyo
        ("XTKS", "2026-11-24T03:30:00Z", True),  # 12:30 Tokyo
        ("XLON", "2026-12-25T12:00:00Z", False),  # Christmas
        ("24/7", "2026-11-29T03:00:00Z", True),  # a 24/7 market on a Sunday night
    ],
)
def test_market_open_follows_the_exchange_calendar(mic: str, at: str, is_open: bool) -> None:
    from api.observability.scrape import markets_open

    assert markets_open([mic], datetime.fromisoformat(at)) == {mic: is_open}


def test_an_unknown_exchange_is_left_out_of_market_open() -> None:
    from api.observability.scrape import markets_open

    assert markets_open(["XNYS", "NOPE"], datetime(2026, 11, 24, 15, tzinfo=UTC)) == {"XNYS": True}


# --- Alertmanager ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail(
            "amtool not found. It ships in Debian's `prometheus-alertmanager` package: `./dev test` "
            "installs it (as root on Debian), or run `apt-get install prometheus-alertmanager`."
        )
    return path


def test_alertmanager_config_is_valid_and_routes_to_the_documented_receiver(amtool: str) -> None:
    proc = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"] for r in cfg["receivers"]}
    assert cfg["route"]["receiver"] in receivers
    readme = README.read_text()
    for name in receivers:
        assert f"`{name}`" in readme, f"README.md does not document the receiver {name}"


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every Grafana query parses (checked by promtool as a recording rule)."""
    rules: list[dict[str, str]] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for expr in dashboard_queries(json.loads(path.read_text())):
            expr = expr.replace("$__rate_interval", "5m").replace("$provider", ".*")
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{len(rules)}", "expr": expr})
    assert len(rules) > 30
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, width=10_000))
    out = run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out
