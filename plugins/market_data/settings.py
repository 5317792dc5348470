"""Process settings read from the environment, one documented field each.

Settings are what differs between machines (addresses, secrets, file locations).
What the operators tune at run time (tiers, cadences, providers, thresholds) is the
policy (`market_data.policy`), which is versioned in Postgres and hot-reloadable.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    """DATABASE_URL: the market-data Postgres database (asyncpg DSN)."""
    redis_url: str
    """REDIS_URL: Redis for breakers, health history, rate limits and the RLC job list."""
    redis_prefix: str
    """MARKET_DATA_REDIS_PREFIX: prefix of every Redis key we own (tests use one per run)."""
    policy_file: Path
    """MARKET_DATA_POLICY_FILE: the policy TOML used when Postgres holds no active version."""
    sql_dir: Path
    """MARKET_DATA_SQL_DIR: folder of numbered migrations."""
    include_dir: Path
    """MARKET_DATA_INCLUDE_DIR: folder of non-code assets (universe seed, pools, rules)."""
    ops_token: str
    """MARKET_DATA_OPS_TOKEN: bearer token for /ops/* (empty disables the ops endpoints)."""
    statsd_host: str
    """STATSD_HOST: where task processes send statsd metrics."""
    statsd_port: int
    """STATSD_PORT: statsd UDP port (statsd_exporter listens on 9125 in docker-compose)."""
    statsd_prefix: str
    """STATSD_PREFIX: prefix of our dotted statsd names."""
    database_read_url: str | None = None
    """DATABASE_READ_URL: a hot standby of DATABASE_URL the API reads from (unset: the primary
    serves every read). What stays on the primary: `api/replica.py`."""
    database_read_max_lag: float = 5.0
    """DATABASE_READ_MAX_LAG: seconds the standby may be behind the primary before the API
    reads from the primary instead."""
    cache_dir: Path | None = None
    """MARKET_DATA_CACHE_DIR: files processes share to start faster (exchange session tables);
    default `$XDG_CACHE_HOME/market_data` (`~/.cache/market_data`); `off` disables it."""
    airflow_api_url: str = ""
    """MD_AIRFLOW_API_URL: Airflow's api-server (e.g. http://localhost:8080), whose REST API the
    API wakes md_backfill through and `./dev integrity` reads; empty: not used."""
    airflow_api_user: str = "market_data_api"
    """MD_AIRFLOW_API_USER: the Airflow user the service acts as (role `op`: it posts asset events)."""
    airflow_api_password: str = ""
    """MD_AIRFLOW_API_PASSWORD: that user's password; empty: read it from the credentials file."""
    airflow_api_credentials_file: Path | None = None
    """MD_AIRFLOW_API_CREDENTIALS_FILE: a JSON object user -> password, e.g. the simple auth
    manager's generated `simple_auth_manager_passwords.json.generated`."""

    @classmethod
    def from_env(cls) -> Settings:
        include = Path(_env("MARKET_DATA_INCLUDE_DIR", str(PROJECT_ROOT / "include")))
        return cls(
            database_url=_env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/market_data"),
            redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=_env("MARKET_DATA_REDIS_PREFIX", "md:"),
            policy_file=Path(_env("MARKET_DATA_POLICY_FILE", str(include / "policy.toml"))),
            sql_dir=Path(_env("MARKET_DATA_SQL_DIR", str(PROJECT_ROOT / "sql"))),
            include_dir=include,
            ops_token=os.environ.get("MARKET_DATA_OPS_TOKEN", ""),
            statsd_host=_env("STATSD_HOST", "127.0.0.1"),
            statsd_port=int(_env("STATSD_PORT", "8125")),
            statsd_prefix=_env("STATSD_PREFIX", "market_data"),
            database_read_url=_env("DATABASE_READ_URL", "") or None,
            database_read_max_lag=_seconds("DATABASE_READ_MAX_LAG", 5.0),
            cache_dir=_cache_dir(),
            airflow_api_url=_env("MD_AIRFLOW_API_URL", ""),
            airflow_api_user=_env("MD_AIRFLOW_API_USER", "market_data_api"),
            airflow_api_password=os.environ.get("MD_AIRFLOW_API_PASSWORD", ""),
            airflow_api_credentials_file=_optional_path("MD_AIRFLOW_API_CREDENTIALS_FILE"),
        )


def _optional_path(name: str) -> Path | None:
    raw = _env(name, "")
    return Path(raw) if raw else None


def _seconds(name: str, default: float) -> float:
    raw = _env(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw[:20]!r} is not a number of seconds") from None
    if not 0 < value < 86_400:
        raise ValueError(f"{name}: {value:g} is out of range (more than 0 and less than 86400 seconds)")
    return value


def _cache_dir() -> Path | None:
    raw = _env("MARKET_DATA_CACHE_DIR", "")
    if raw.lower() == "off":
        return None
    if raw:
        return Path(raw)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory to be found: no cache
            return None
    return Path(base) / "market_data"


def get_settings() -> Settings:
    """Settings as the environment says now (cheap; not cached so tests can change env)."""
    return Settings.from_env()
