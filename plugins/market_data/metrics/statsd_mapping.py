"""The catalog's part of statsd_exporter's mapping file, generated from the catalog.

`include/statsd/mapping.yml` holds two parts: the rules for our task-side metrics, between
the BEGIN/END marker lines below, written here from `CATALOG` and `OPERATIONAL`, and Airflow's
own rules after them, written by hand. `python -m market_data.cli statsd-mapping` rewrites the
generated part; `--check` (and the tests) refuse a file whose part differs from the catalog.

Each task-side metric gets one glob rule, `<prefix>.<metric>.*...` (one `*` per label, in
catalog order, as the emitter sends them), restricted to the statsd type the emitter uses
(histograms are observers sent as `|h`), with the catalog's help text, buckets and ttl.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from market_data.metrics.catalog import CATALOG, OPERATIONAL, Metric

BEGIN_MARKER: Final = "  # --- BEGIN generated from the catalog: python -m market_data.cli statsd-mapping"
END_MARKER: Final = "  # --- END generated from the catalog"

STATSD_METRIC_TYPE: Final = {"counter": "counter", "gauge": "gauge", "histogram": "observer"}
"""statsd_exporter's `match_metric_type` for each catalog type."""


class MappingFileError(ValueError):
    """The mapping file has no (or a broken) generated part to replace."""


def task_side_metrics() -> list[Metric]:
    """Metrics tasks send over statsd: the catalog's task-side ones, then the operational ones."""
    return [m for m in (*CATALOG.values(), *OPERATIONAL.values()) if m.from_task]


def _number(value: float) -> str:
    # 30000.0 -> "30000"; never an exponent, which YAML 1.1 would read as a string
    return str(int(value)) if value.is_integer() else repr(value)


def rule_lines(m: Metric, prefix: str) -> list[str]:
    """One mapping rule, as YAML lines indented for the `mappings:` list."""
    lines = [
        f"  - match: {m.statsd_glob(prefix)}",
        f"    match_metric_type: {STATSD_METRIC_TYPE[m.type]}",
        f"    name: {m.name}",
        f"    help: {json.dumps(m.help)}",  # a JSON string is a valid YAML double-quoted scalar
    ]
    if m.labels:
        lines.append("    labels:")
        lines += [f'      {label}: "${i}"' for i, label in enumerate(m.labels, 1)]
    if m.type == "histogram":
        lines += [
            "    observer_type: histogram",
            "    histogram_options:",
            f"      buckets: [{', '.join(_number(b) for b in m.buckets)}]",
        ]
    if m.statsd_ttl:
        lines.append(f"    ttl: {m.statsd_ttl}")
    return lines


def generated_part(prefix: str, metrics: Iterable[Metric] | None = None) -> str:
    """The generated part of the mapping file, marker lines included."""
    rules = [rule_lines(m, prefix) for m in (task_side_metrics() if metrics is None else metrics)]
    body = "\n\n".join("\n".join(rule) for rule in rules)
    return f"{BEGIN_MARKER}\n{body}\n{END_MARKER}"


def with_generated_part(text: str, prefix: str) -> str:
    """The mapping file `text` with its generated part written afresh from the catalog.

    Raises:
        MappingFileError: the markers are missing, repeated or out of order.
    """
    lines = text.split("\n")
    begins = [i for i, line in enumerate(lines) if line == BEGIN_MARKER]
    ends = [i for i, line in enumerate(lines) if line == END_MARKER]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise MappingFileError(
            f"expected one {BEGIN_MARKER.strip()!r} line and, after it, one {END_MARKER.strip()!r} line"
        )
    return "\n".join([*lines[: begins[0]], generated_part(prefix), *lines[ends[0] + 1 :]])


__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "MappingFileError",
    "generated_part",
    "rule_lines",
    "task_side_metrics",
    "with_generated_part",
]
