"""Parse the DAG folder the way the dag-processor does, with every way out of the process blocked.

Run as a script by test_dagbag.py in a fresh interpreter. Prints a JSON report: import
errors, DAG ids with tags/retries, and any socket, Connection or Variable access attempted
while parsing.
"""

from __future__ import annotations

import json
import socket
import sys

attempts: list[str] = []


def _blocked(kind: str):
    def refuse(*args, **kwargs):
        attempts.append(f"{kind}: {args[1:2] or args[:1]}")
        raise OSError(f"{kind} is not allowed while parsing DAGs")

    return refuse


socket.socket.connect = _blocked("socket.connect")  # type: ignore[method-assign]
socket.create_connection = _blocked("socket.create_connection")  # type: ignore[assignment]

from airflow.sdk import Connection, Variable  # noqa: E402

Connection.get = classmethod(_blocked("Connection.get"))  # type: ignore[method-assign,assignment]
Variable.get = staticmethod(_blocked("Variable.get"))  # type: ignore[method-assign,assignment]

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

bag = DagBag(dag_folder=sys.argv[1])
report = {
    "import_errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "tags": sorted(dag.tags or []),
            "retries": {t.task_id: t.retries for t in dag.tasks},
            "doc_md": bool(dag.doc_md),
            "catchup": dag.catchup,
        }
        for dag_id, dag in bag.dags.items()
    },
    "attempts": attempts,
}
print(json.dumps(report))
