"""Provider credentials: environment variables first, then the provider's Airflow connection.

Each adapter kind says where its credentials live in its `SPEC.credentials` (a
`CredentialSource`), and `read_credentials` looks there. Airflow is optional here: it is
imported only when the environment has no credentials, and a process without Airflow (the
API, scripts) simply sees no connection.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


class MissingCredentialsError(ValueError):
    """A provider needs credentials and neither the environment nor Airflow has them."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


# A dataclass rather than a msgspec Struct: repr=False keeps secrets out of reprs and logs.
@dataclass(frozen=True)
class Credentials:
    """An API key, and for key pairs its secret."""

    key: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CredentialSource:
    """Where one adapter kind's credentials come from."""

    key_env: str
    conn_id: str
    key_field: str
    """Connection attribute holding the key: `password` or `login`."""
    secret_env: str | None = None
    secret_field: str | None = None

    @property
    def env_names(self) -> list[str]:
        return [self.key_env] + ([self.secret_env] if self.secret_env else [])


def _from_env(source: CredentialSource, env: Mapping[str, str]) -> Credentials | None:
    key = env.get(source.key_env, "").strip()
    secret = env.get(source.secret_env, "").strip() if source.secret_env else None
    if not key or (source.secret_env and not secret):
        return None
    return Credentials(key=key, secret=secret)


def _from_airflow(source: CredentialSource) -> Credentials | None:
    try:
        from airflow.sdk import Connection
    except ImportError:
        return None
    try:
        conn = Connection.get(source.conn_id)
    except Exception as exc:
        # AirflowNotFoundException is the usual answer; anything else also means "no
        # connection", but say so (the type only: messages are not ours to vouch for).
        if type(exc).__name__ != "AirflowNotFoundException":
            log.warning("Airflow connection %s unreadable: %s", source.conn_id, type(exc).__name__)
        return None
    key = (getattr(conn, source.key_field, None) or "").strip()
    secret = (getattr(conn, source.secret_field, None) or "").strip() if source.secret_field else None
    if not key or (source.secret_field and not secret):
        return None
    return Credentials(key=key, secret=secret)


def _from_airflow_env(source: CredentialSource, env: Mapping[str, str]) -> Credentials | None:
    """The connection as Airflow's AIRFLOW_CONN_<ID> variable gives it (JSON or URI), read
    without importing Airflow."""
    raw = env.get(f"AIRFLOW_CONN_{source.conn_id.upper()}", "").strip()
    if not raw:
        return None
    fields: dict[str, str] = {}
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        fields = {k: str(v) for k, v in data.items() if isinstance(v, str | int)}
    else:
        parts = urlsplit(raw)
        fields = {"login": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    key = fields.get(source.key_field, "").strip()
    secret = fields.get(source.secret_field or "", "").strip() if source.secret_field else None
    if not key or (source.secret_field and not secret):
        return None
    return Credentials(key=key, secret=secret)


def read_credentials(
    kind: str, source: CredentialSource, env: Mapping[str, str] | None = None, *, use_airflow: bool = True
) -> Credentials:
    """The credentials of an adapter kind: environment variables, else its Airflow connection.

    Args:
        source: where the kind keeps them (its `SPEC.credentials`).
        use_airflow: also ask Airflow's secrets backends (imports Airflow: slow outside tasks).
            Without it, only the environment is read, including AIRFLOW_CONN_<ID> variables.

    Raises:
        MissingCredentialsError: neither source has them.
    """
    environ = os.environ if env is None else env
    found = _from_env(source, environ) or _from_airflow_env(source, environ)
    if found is None and use_airflow:
        found = _from_airflow(source)
    if found is None:
        raise MissingCredentialsError(
            kind,
            f"no credentials: set {' and '.join(source.env_names)} "
            f"or the Airflow connection {source.conn_id!r}",
        )
    return found
