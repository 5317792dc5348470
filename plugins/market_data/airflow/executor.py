"""Which Airflow executor runs the tasks, and the settings of CeleryExecutor.

LocalExecutor is the default: the scheduler forks the task processes itself. CeleryExecutor
(`./dev up --celery-workers N`, docker-compose's `scale` profile) sends them through Redis to
`airflow celery worker` processes, on this machine or others. Its settings live here once;
`./dev` exports them (`python -m market_data.cli celery-env`), the tests and benchmarks start
their workers with them, and tests/unit/test_compose.py holds docker-compose to the same values:

- broker: the Redis of REDIS_URL, every key under `<MARKET_DATA_REDIS_PREFIX>celery:` (kombu's
  `global_keyprefix`, which covers its pub/sub channels too): beside the registry's keys
  (`md:provider:*`, `md:limit:*`), never among them, and two installations (or test runs) that
  share a Redis with different prefixes never take each other's tasks;
- result backend: the Airflow metadata database (`db+` + its SQLAlchemy URL), as the provider
  does by default;
- visibility timeout 6 h: a task whose worker died without acknowledging it is offered again
  only after that; the scheduler has long retried it by then (its heartbeat stops), and the
  late copy of the old try is refused by the execution API;
- each task instance records which worker ran it (`market_data.airflow.worker_name`);
- the task code is imported once per worker, before its pool forks
  (`market_data.airflow.celery_config`).
"""

from __future__ import annotations

from market_data.airflow.worker_name import HOSTNAME_CALLABLE

CELERY_CONFIG_OPTIONS = "market_data.airflow.celery_config.CELERY_CONFIG"

LOCAL = "LocalExecutor"
CELERY = "CeleryExecutor"
BROKER_KEY_SUFFIX = "celery:"
VISIBILITY_TIMEOUT_S = 6 * 3600


def worker_concurrency(parallelism: int, workers: int) -> int:
    """Task slots per worker: the scheduler's `parallelism` shared out (at least one each)."""
    return max(1, -(-parallelism // max(1, workers)))


def celery_env(
    *, redis_url: str, redis_prefix: str, sql_alchemy_conn: str, concurrency: int
) -> dict[str, str]:
    """The Airflow settings (environment variables) of every component of a CeleryExecutor stack.

    Args:
        redis_url: REDIS_URL, the broker's server and database.
        redis_prefix: MARKET_DATA_REDIS_PREFIX, the installation's Redis namespace.
        sql_alchemy_conn: `[database] sql_alchemy_conn`, the metadata database (result backend).
        concurrency: task slots of each worker (`worker_concurrency`).
    """
    return {
        "AIRFLOW__CORE__EXECUTOR": CELERY,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": redis_prefix + BROKER_KEY_SUFFIX,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_alchemy_conn,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_OPTIONS,
    }


def worker_args(index: int, *, serve_logs: bool) -> list[str]:
    """`airflow celery worker` arguments of worker `index` (1-based) on a machine with several.

    Each gets a Celery node name of its own (`md-worker-<index>@%h`). Only one serves task logs:
    they share the machine's log folder, and the log server's port is one setting for all.
    """
    args = ["celery", "worker", "--celery-hostname", f"md-worker-{index}@%h"]
    return args if serve_logs else [*args, "--skip-serve-logs"]


def worker_name(index: int) -> str:
    """MD_WORKER_NAME of worker `index`: what its task instances record as their host name."""
    return f"md-worker-{index}"
