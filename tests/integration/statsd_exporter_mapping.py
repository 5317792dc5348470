"""Test helpers: a statsd UDP receiver and statsd_exporter's mapping semantics in Python.

statsd_exporter is not packaged for Debian or PyPI, so `StatsdMapping` re-implements what
its mapper does with `include/statsd/mapping.yml` (prometheus/statsd_exporter pkg/mapper):

- glob rules (the default `match_type`) are tried first, in file order, first match wins;
  a glob is dot-separated fields, each a literal or `*`, and `*` captures one whole field;
- regex rules are tried after the globs, in file order, unanchored (`re.search`);
- `match_metric_type` (counter | gauge | observer) restricts a rule to one statsd type;
- `$1` / `${1}` in `name` and label values expand to the captures;
- `action: drop` discards the sample; a name no rule matches is exported with every
  character outside [a-zA-Z0-9_] turned into `_` and no labels.

`StatsdReceiver` binds a UDP socket on 127.0.0.1 and collects the lines sent to it; point
STATSD_PORT at it to capture what task code emits (e.g. around a sweep).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, NamedTuple

import yaml

# The checks statsd_exporter applies when it loads a mapping file.
_STATSD_FIELD = r"[a-zA-Z_](-?[a-zA-Z0-9_])+"
GLOB_MATCH_RE = re.compile(rf"^(\*\.|{_STATSD_FIELD}\.)+(\*|{_STATSD_FIELD})$")
_TEMPLATE = r"(\$\{?\d+\}?)"
METRIC_NAME_RE = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
_EXPAND_RE = re.compile(r"\$\{(\d+)\}|\$(\d+)")

STATSD_TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}


class MappingRule(NamedTuple):
    position: int
    match: str
    match_type: str
    name: str
    labels: dict[str, str]
    match_metric_type: str | None
    action: str
    observer_type: str | None
    buckets: tuple[float, ...]
    help: str | None
    ttl: str | None
    regex: re.Pattern[str] | None


class Mapped(NamedTuple):
    """What statsd_exporter would export for one statsd sample."""

    name: str
    labels: dict[str, str]
    rule: MappingRule | None
    dropped: bool = False


class StatsdLine(NamedTuple):
    name: str
    value: float
    type: str  # c | g | ms | h | d


def escape_metric_name(name: str) -> str:
    """statsd_exporter's name for an unmapped statsd metric."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "_" + out if out[:1].isdigit() else out


def _expand(template: str, captures: list[str]) -> str:
    def one(m: re.Match[str]) -> str:
        i = int(m.group(1) or m.group(2))
        return captures[i - 1] if 0 < i <= len(captures) else ""

    return _EXPAND_RE.sub(one, template)


class MappingError(ValueError):
    """The mapping file would not load in statsd_exporter."""


class StatsdMapping:
    def __init__(self, path: Path) -> None:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        defaults = doc.get("defaults") or {}
        default_match_type = defaults.get("match_type", "glob")
        self.rules: list[MappingRule] = []
        for i, raw in enumerate(doc.get("mappings") or []):
            name = raw.get("name", "")
            if not name:
                raise MappingError(f"line {i}: metric mapping didn't set a metric name")
            if not METRIC_NAME_RE.match(name):
                raise MappingError(f"metric name {name!r} is invalid")
            labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
            for k in labels:
                if not LABEL_NAME_RE.match(k):
                    raise MappingError(f"invalid label key: {k}")
            match_type = raw.get("match_type", default_match_type)
            match = str(raw["match"])
            regex = None
            if match_type == "glob":
                if not GLOB_MATCH_RE.match(match):
                    raise MappingError(f"invalid match: {match}")
            elif match_type == "regex":
                regex = re.compile(match)
            else:
                raise MappingError(f"unknown match_type {match_type!r}")
            hist = raw.get("histogram_options") or {}
            self.rules.append(
                MappingRule(
                    position=i,
                    match=match,
                    match_type=match_type,
                    name=name,
                    labels=labels,
                    match_metric_type=raw.get("match_metric_type"),
                    action=raw.get("action", "map"),
                    observer_type=raw.get("observer_type") or raw.get("timer_type"),
                    buckets=tuple(float(b) for b in (hist.get("buckets") or raw.get("buckets") or ())),
                    help=raw.get("help"),
                    ttl=raw.get("ttl"),
                    regex=regex,
                )
            )
        self._globs = [r for r in self.rules if r.match_type == "glob"]
        self._regexes = [r for r in self.rules if r.match_type == "regex"]

    def map(self, statsd_name: str, statsd_type: str = "c") -> Mapped:
        metric_type = STATSD_TYPES[statsd_type]
        fields = statsd_name.split(".")
        for rule in self._globs:
            if rule.match_metric_type and rule.match_metric_type != metric_type:
                continue
            pattern = rule.match.split(".")
            if len(pattern) != len(fields):
                continue
            captures: list[str] = []
            for p, f in zip(pattern, fields, strict=True):
                if p == "*":
                    captures.append(f)
                elif p != f:
                    break
            else:
                return self._result(rule, captures)
        for rule in self._regexes:
            assert rule.regex is not None
            m = rule.regex.search(statsd_name)
            if m is None:
                continue
            if rule.match_metric_type and rule.match_metric_type != metric_type:
                continue
            return self._result(rule, [g or "" for g in m.groups()])
        return Mapped(escape_metric_name(statsd_name), {}, None)

    @staticmethod
    def _result(rule: MappingRule, captures: list[str]) -> Mapped:
        if rule.action == "drop":
            return Mapped("", {}, rule, dropped=True)
        labels = {k: _expand(v, captures) for k, v in rule.labels.items()}
        return Mapped(_expand(rule.name, captures), labels, rule)

    def output_names(self) -> set[str]:
        """Prometheus names the mapping can produce (template-free names only)."""
        return {r.name for r in self.rules if r.action != "drop" and "$" not in r.name}


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
