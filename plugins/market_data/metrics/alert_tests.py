"""The promtool tests of the calendar-aware alert, generated from the exchange calendars.

`include/prometheus/alerts_calendar_test.yml` replays real days: the `market_open{mic}` series
the API exposes (sampled every 5 minutes from `calendar.is_open_at`, the function the API
calls), with no WebSocket client, and expects `NoWSClientsDuringRTH` exactly when its rule
says: the NYSE in session at an evaluation and at the two before it (`for: 10m` at a 5-minute
evaluation interval). The days are a holiday (Thanksgiving: no alert, although London trades),
an early close (the day after: no alert after 13:00 New York time) and a normal session (the
alert fires), plus a normal session with a client connected (no alert).
`python -m market_data.cli alert-tests` writes the file; `--check` and the tests refuse a file
that differs from what the calendars give.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from market_data import calendar

RULE_TEST_FILE: Final = "alerts_calendar_test.yml"
ALERT: Final = "NoWSClientsDuringRTH"
MICS: Final = ("XNYS", "XLON")
"""The exchanges replayed: the alert's (XNYS) and one that trades while it is closed."""
STEP: Final = timedelta(minutes=5)
FOR_STEPS: Final = 2
"""`for: 10m` at the 5-minute evaluation interval: pending for two evaluations, firing at the third."""
CHECK_EVERY: Final = 3
"""Check the alert every 3rd step (15 minutes), and at every step around a change."""


class CalendarDay(msgspec.Struct, frozen=True):
    day: date
    name: str
    clients: int = 0
    """WebSocket clients connected all day (on one of two API processes)."""


DAYS: Final = (
    CalendarDay(date(2026, 11, 26), "Thanksgiving: the NYSE is closed all day (London trades): no alert"),
    CalendarDay(
        date(2026, 11, 27),
        "the day after Thanksgiving: the NYSE closes at 13:00 New York time (18:00 UTC): no alert after it",
    ),
    CalendarDay(
        date(2026, 11, 24), "a normal session: the alert fires 10 minutes after the open until the close"
    ),
    CalendarDay(date(2026, 11, 24), "near miss: a client connected during a normal session, no alert", 3),
)


def open_series(mic: str, day: date) -> list[int]:
    """market_open of `mic` at every STEP of `day` (UTC), 00:00 to 24:00 inclusive."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    steps = int(timedelta(days=1) / STEP)
    return [int(calendar.is_open_at(mic, start + i * STEP)) for i in range(steps + 1)]


def expanding(values: list[int]) -> str:
    """promtool's expanding notation, run by run: `0x173 1x77 ...` (`axn` is n+1 samples of a)."""
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return " ".join(f"{v}x{n - 1}" if n > 1 else str(v) for v, n in runs)


def firing(session: list[int], clients: int) -> list[bool]:
    """At each step, whether the alert fires: no client, and in session for FOR_STEPS + 1 evaluations."""
    return [
        clients == 0 and i >= FOR_STEPS and all(session[i - FOR_STEPS : i + 1]) for i in range(len(session))
    ]


def _duration(step: int) -> str:
    minutes = step * int(STEP.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60}m"


def _alert_rule(alerts_file: Path) -> dict[str, Any]:
    doc = yaml.safe_load(alerts_file.read_text())
    return next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == ALERT)


def test_group(day: CalendarDay, rule: dict[str, Any], external_labels: dict[str, str]) -> dict[str, Any]:
    series = {mic: open_series(mic, day.day) for mic in MICS}
    fires = firing(series["XNYS"], day.clients)
    changes = {i + d for i in range(1, len(fires)) if fires[i] != fires[i - 1] for d in (-1, 0, 1)}
    steps = sorted({i for i in range(len(fires)) if i % CHECK_EVERY == 0} | changes)
    base = external_labels["runbook_base_url"]
    annotations = {
        k: str(v).replace("{{ $externalLabels.runbook_base_url }}", base)
        for k, v in rule["annotations"].items()
    }
    return {
        "name": f"{day.day.isoformat()}, {day.name}",
        "interval": f"{int(STEP.total_seconds() // 60)}m",
        "external_labels": external_labels,
        "input_series": [
            *(
                {
                    "series": f'market_open{{mic="{mic}", job="market-data-api", instance="api:8001"}}',
                    "values": expanding(values),
                }
                for mic, values in series.items()
            ),
            {
                "series": 'ws_clients_gauge{job="market-data-api", instance="api:8001"}',
                "values": expanding([day.clients] * len(fires)),
            },
            {
                "series": 'ws_clients_gauge{job="market-data-api", instance="api2:8001"}',
                "values": expanding([0] * len(fires)),
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": _duration(i),
                "alertname": ALERT,
                "exp_alerts": [{"exp_labels": rule["labels"], "exp_annotations": annotations}]
                if fires[i]
                else [],
            }
            for i in steps
            if i < len(fires)
        ],
    }


def rule_tests(prometheus_dir: Path) -> str:
    """The text of alerts_calendar_test.yml for the rule files and prometheus.yml in `prometheus_dir`."""
    rule = _alert_rule(prometheus_dir / "alerts.yml")
    labels = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text())["global"]["external_labels"]
    doc = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": f"{int(STEP.total_seconds() // 60)}m",
        "tests": [test_group(day, rule, {"runbook_base_url": labels["runbook_base_url"]}) for day in DAYS],
    }
    header = (
        f"# promtool tests of {ALERT} on real days: generated from exchange-calendars by\n"
        "# `python -m market_data.cli alert-tests` (market_data/metrics/alert_tests.py); do not edit.\n"
        "# promtool's clock starts at 0: each group replays one UTC day from 00:00.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, width=10_000)
