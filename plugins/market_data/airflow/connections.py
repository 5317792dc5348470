"""Airflow connections -> the DSNs the core package takes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from market_data.settings import get_settings

MARKET_DATA_DB = "market_data_db"
MARKET_DATA_REDIS = "market_data_redis"


def _get_connection(conn_id: str) -> Any:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _postgres_dsn(conn: Any) -> str:
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    port = f":{conn.port}" if conn.port else ""
    return f"postgresql://{auth}{conn.host or '127.0.0.1'}{port}/{conn.schema or 'market_data'}"


def market_data_dsn() -> str:
    """asyncpg DSN of the market-data database: connection `market_data_db`, else DATABASE_URL."""
    conn = _get_connection(MARKET_DATA_DB)
    return get_settings().database_url if conn is None else _postgres_dsn(conn)


def scheduler_market_data_dsn() -> str:
    """The same DSN for timetables: `market_data_db` from AIRFLOW_CONN_MARKET_DATA_DB, else DATABASE_URL.

    Never from the metadata database: timetables run inside the scheduler loop's transaction,
    and a look-up there would go through the loop's own scoped session, whose commit (refused
    by the loop's guard) or rollback would break the loop's locks.
    """
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    conn = EnvironmentVariablesBackend().get_connection(MARKET_DATA_DB)
    return get_settings().database_url if conn is None else _postgres_dsn(conn)


def redis_url() -> str:
    """Redis URL: connection `market_data_redis`, else REDIS_URL."""
    conn = _get_connection(MARKET_DATA_REDIS)
    if conn is None:
        return get_settings().redis_url
    auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
    db = (conn.extra_dejson or {}).get("db", conn.schema or 0)
    return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"
