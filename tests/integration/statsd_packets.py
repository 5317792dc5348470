"""Test helpers: a statsd UDP receiver, and what a task's statsd line stands for.

`StatsdReceiver` binds a UDP socket on 127.0.0.1 and collects the lines sent to it; point
STATSD_PORT at it to capture what task code emits (e.g. around a sweep).

`land_on_catalog_metric` checks one received line against the catalog and the committed
`include/statsd/mapping.yml` without re-running statsd_exporter's matcher: the line must
follow the emitter's naming scheme for a task-side catalog metric (prefix, metric, one field
per label, the metric's statsd type), and the mapping must hold that metric's generated rule,
whose glob has the line's shape. The catalog rules come first in the file and no hand-written
rule uses our prefix (tests/integration/test_statsd_mapping.py), so statsd_exporter exports
the line under the rule's name and labels.
"""

from __future__ import annotations

import socket
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from market_data.metrics import CATALOG, OPERATIONAL, Metric
from market_data.metrics.statsd_mapping import STATSD_METRIC_TYPE
from market_data.settings import PROJECT_ROOT

MAPPING_FILE = PROJECT_ROOT / "include" / "statsd" / "mapping.yml"
PREFIX = "market_data"
"""The prefix the committed mapping is generated for (STATSD_PREFIX's default)."""
STATSD_TYPE = {"counter": "c", "gauge": "g", "histogram": "h"}
"""The statsd type the emitter sends each catalog type as."""


class StatsdLine(NamedTuple):
    name: str
    value: float
    type: str  # c | g | ms | h | d


class CatalogSample(NamedTuple):
    """What statsd_exporter exports for one of our lines: the catalog metric and its labels."""

    metric: Metric
    labels: dict[str, str]


def mapping_rules(path: Path = MAPPING_FILE) -> list[dict[str, Any]]:
    """The rules of a mapping file, as YAML dictionaries, in file order."""
    rules: list[dict[str, Any]] = yaml.safe_load(path.read_text())["mappings"]
    return rules


@cache
def _committed_rules_by_match() -> dict[str, dict[str, Any]]:
    return {str(r["match"]): r for r in mapping_rules()}


def land_on_catalog_metric(line: StatsdLine, prefix: str = PREFIX) -> CatalogSample:
    """The catalog metric and labels one of our statsd lines is exported as.

    Raises:
        AssertionError: the line does not follow the emitter's scheme for a task-side catalog
            metric, or the committed mapping has no generated rule for it.
    """
    head, name, *values = line.name.split(".")
    assert head == prefix, f"{line.name}: not under the {prefix!r} prefix"
    metric = CATALOG.get(name) or OPERATIONAL.get(name)
    assert metric is not None, f"{line.name}: {name!r} is not a catalog metric"
    assert metric.from_task, f"{line.name}: {name} is not emitted by tasks in the catalog"
    assert len(values) == len(metric.labels), f"{line.name}: {name} takes labels {metric.labels}"
    assert line.type == STATSD_TYPE[metric.type], f"{line.name}: a {metric.type} sent as |{line.type}"
    rule = _committed_rules_by_match().get(metric.statsd_glob(prefix))
    assert rule is not None, f"{line.name}: no rule {metric.statsd_glob(prefix)!r} in {MAPPING_FILE.name}"
    assert rule["name"] == metric.name and rule.get("action", "map") == "map", rule
    assert rule["match_metric_type"] == STATSD_METRIC_TYPE[metric.type], rule
    labels = rule.get("labels") or {}
    assert labels == {label: f"${i}" for i, label in enumerate(metric.labels, 1)}, rule
    return CatalogSample(metric, dict(zip(metric.labels, values, strict=True)))


def parse_statsd_lines(packet: bytes) -> list[StatsdLine]:
    """Lines of one statsd datagram (`name:value|type[|@rate]`, newline-separated)."""
    lines = []
    for raw in packet.decode("ascii").splitlines():
        if not raw:
            continue
        name, _, rest = raw.partition(":")
        parts = rest.split("|")
        if len(parts) < 2 or not name:
            raise ValueError(f"malformed statsd line {raw!r}")
        lines.append(StatsdLine(name, float(parts[0]), parts[1]))
    return lines


class StatsdReceiver:
    """A UDP socket on 127.0.0.1 that collects statsd lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def receive(self, expected_lines: int, timeout: float = 3.0) -> list[StatsdLine]:
        """Read datagrams until `expected_lines` lines arrived, then drain what is left."""
        lines: list[StatsdLine] = []
        self.sock.settimeout(timeout)
        try:
            while len(lines) < expected_lines:
                lines += parse_statsd_lines(self.sock.recv(65535))
            self.sock.settimeout(0.2)
            while True:
                lines += parse_statsd_lines(self.sock.recv(65535))
        except TimeoutError:
            pass
        return lines

    def close(self) -> None:
        self.sock.close()
