"""The host name Airflow records on each task instance (`[core] hostname_callable`).

Airflow stores the name of the machine a task ran on (`task_instance.hostname`, shown in the UI
and the REST API) and checks each heartbeat against it. Several Celery workers on one machine
(`./dev up --celery-workers N`) would all record the same name, so each gets its own through
`MD_WORKER_NAME` and the task instances say which worker ran them. Without it this is the
machine's FQDN, as Airflow's default (`airflow.utils.net.getfqdn`): in docker-compose every worker
is a container with a name of its own.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "MD_WORKER_NAME"
HOSTNAME_CALLABLE = "market_data.airflow.worker_name.task_hostname"
"""The `[core] hostname_callable` value that selects `task_hostname`."""


def task_hostname() -> str:
    """MD_WORKER_NAME if set, else the machine's fully qualified domain name."""
    return os.environ.get(WORKER_NAME_ENV, "").strip() or socket.getfqdn()
