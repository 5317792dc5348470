"""Run md_sweep_t0 with dag.test() in a process whose Airflow traces; print the spans as one line.

`python -m tests.dags.traced_sweep DAGS_FOLDER`, with AIRFLOW__TRACES__OTEL_ON=True: importing
Airflow runs its own `configure_otel`, which installs the global TracerProvider from the
`[traces]` settings; the spans are also collected in memory and printed as `SPANS <json>`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import airflow  # noqa: F401 - settings.initialize(): configure_otel reads [traces]
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

LOGICAL = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def main(dags_folder: str) -> int:
    from airflow.dag_processing.dagbag import DagBag

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        print(f"SPANS null  # Airflow installed no TracerProvider ({type(provider).__name__})")
        return 1
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = DagBag(dag_folder=dags_folder).get_dag("md_sweep_t0").test(logical_date=LOGICAL)
    spans = exporter.get_finished_spans()
    names = {s.context.span_id: s.name for s in spans if s.context is not None}
    out = [
        {
            "name": s.name,
            "parent": names.get(s.parent.span_id) if s.parent is not None else None,
            "attributes": dict(s.attributes or {}),
        }
        for s in spans
    ]
    print("SPANS " + json.dumps({"state": str(run.state), "spans": out}, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
