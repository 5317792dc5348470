"""Prometheus config and alert rules: promtool checks, promtool unit tests, runbook links.

promtool comes from Debian's `prometheus` package; `./dev test` installs it when missing.
These tests fail (never skip) without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from market_data.metrics import CATALOG
from market_data.settings import PROJECT_ROOT
from tests.unit.test_grafana_dashboards import DASHBOARDS, dashboard_queries, promql_metric_names

PROM_DIR = PROJECT_ROOT / "include" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = ["alerts_test.yml", "alerts_rth_test.yml"]
README = PROJECT_ROOT / "README.md"
NEW_YORK = ZoneInfo("America/New_York")

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


def test_prometheus_scrapes_every_api_replica_and_the_exporter() -> None:
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    # every replica of the compose `api` service: Docker's DNS answers its name with all of them
    (api,) = jobs["market-data-api"]["dns_sd_configs"]
    assert (api["names"], api["type"], api["port"]) == (["api"], "A", 8001)
    assert "static_configs" not in jobs["market-data-api"]
    targets = [t for sc in jobs["statsd-exporter"]["static_configs"] for t in sc["targets"]]
    assert targets == ["statsd-exporter:9102"]
    assert cfg["rule_files"] == ["alerts.yml"]


def test_required_alerts_exist_with_severity_and_runbook() -> None:
    alerts = alert_rules()
    assert set(alerts) == REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["runbook_url"] == f"README.md#runbook-{name.lower()}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


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


# --- trading hours against New York time ------------------------------------------------------
_CLOCK_FUNCTIONS = ("month", "day_of_month", "day_of_week", "hour", "minute")


def clock_expression(ts: int) -> str:
    """market:nyse_regular_hours:bool as one expression with the clock fixed at `ts`."""
    rules = {r["record"]: r["expr"] for r in load_rules() if "record" in r}
    expr = rules["market:nyse_regular_hours:bool"].replace(
        "market:us_eastern_dst:bool", f"({rules['market:us_eastern_dst:bool'].strip()})"
    )
    for fn in _CLOCK_FUNCTIONS:
        expr = expr.replace(f"{fn}()", f"{fn}(vector({ts}))")
    assert "()" not in expr.replace("vector(1)", "").replace("on()", ""), expr
    return expr


def regular_hours(ts: datetime) -> bool:
    local = ts.astimezone(NEW_YORK)
    minutes = local.hour * 60 + local.minute
    return local.weekday() < 5 and 9 * 60 + 30 <= minutes < 16 * 60


def sample_times() -> list[datetime]:
    """The minutes either side of open and close in both UTC offsets, plus night and midday,
    on days around DST changes (weekends included), in summer and in winter."""
    days: list[datetime] = []
    for first in ["2026-03-06", "2026-06-29", "2026-10-30", "2026-12-28", "2027-03-12", "2027-11-05"]:
        start = datetime.fromisoformat(first).replace(tzinfo=UTC)
        days += [start + timedelta(days=i) for i in range(4)]
    minutes = [(3, 0), (13, 29), (13, 30), (14, 29), (14, 30), (17, 0), (19, 59), (20, 0), (20, 59), (21, 0)]
    return [day.replace(hour=h, minute=m) for day in days for h, m in minutes]


def test_trading_hours_rule_follows_new_york_time(promtool: str, tmp_path: Path) -> None:
    times = sample_times()
    tests = [
        {
            "expr": clock_expression(int(t.timestamp())),
            "eval_time": "0s",
            "exp_samples": [{"labels": "{}", "value": 1 if regular_hours(t) else 0}],
        }
        for t in times
    ]
    assert 50 < sum(1 for t in times if regular_hours(t)) < len(times) - 50  # both outcomes
    doc = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"input_series": [], "promql_expr_test": tests}],
    }
    path = tmp_path / "clock_test.yml"
    path.write_text(yaml.safe_dump(doc, width=10_000))
    out = run(promtool, "test", "rules", str(path), cwd=tmp_path)
    assert "SUCCESS" in out


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
