"""Provider credentials: environment first, then Airflow connections, never in reprs."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

import pytest

from market_data.policy.schema import ProviderPolicy
from market_data.providers import build_provider, spec_for
from market_data.providers.credentials import Credentials, MissingCredentialsError, read_credentials


def provider_credentials(
    kind: str, env: Mapping[str, str] | None = None, *, use_airflow: bool = True
) -> Credentials:
    """The credentials of an adapter kind, from where its SPEC says they live."""
    source = spec_for(kind).credentials
    assert source is not None, f"{kind} takes no credentials"
    return read_credentials(kind, source, env, use_airflow=use_airflow)


FINNHUB_CONN = "AIRFLOW_CONN_FINNHUB_DEFAULT"
ALPACA_CONN = "AIRFLOW_CONN_ALPACA_DEFAULT"


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FINNHUB_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY", FINNHUB_CONN, ALPACA_CONN):
        monkeypatch.delenv(var, raising=False)


def test_finnhub_key_from_the_environment() -> None:
    assert provider_credentials("finnhub", env={"FINNHUB_API_KEY": " fh-env-key "}) == Credentials(
        key="fh-env-key"
    )


def test_alpaca_key_pair_from_the_environment() -> None:
    env = {"ALPACA_API_KEY_ID": "PKENVID", "ALPACA_API_SECRET_KEY": "env-secret"}
    assert provider_credentials("alpaca", env=env) == Credentials(key="PKENVID", secret="env-secret")


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINNHUB_API_KEY", "fh-process-key")
    assert provider_credentials("finnhub").key == "fh-process-key"


def test_airflow_connection_when_the_environment_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINNHUB_CONN, json.dumps({"conn_type": "http", "password": "fh-conn-key"}))
    monkeypatch.setenv(
        ALPACA_CONN, json.dumps({"conn_type": "http", "login": "PKCONNID", "password": "conn-secret"})
    )
    assert provider_credentials("finnhub", env={}) == Credentials(key="fh-conn-key")
    assert provider_credentials("alpaca", env={}) == Credentials(key="PKCONNID", secret="conn-secret")


def test_environment_wins_over_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINNHUB_CONN, json.dumps({"conn_type": "http", "password": "fh-conn-key"}))
    assert provider_credentials("finnhub", env={"FINNHUB_API_KEY": "fh-env-key"}).key == "fh-env-key"


def test_half_a_key_pair_in_the_environment_is_not_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingCredentialsError) as caught:
        provider_credentials("alpaca", env={"ALPACA_API_KEY_ID": "PKHALF"})
    message = str(caught.value)
    assert "ALPACA_API_KEY_ID and ALPACA_API_SECRET_KEY" in message
    assert "'alpaca_default'" in message
    assert "PKHALF" not in message
    assert caught.value.kind == "alpaca"
    assert isinstance(caught.value, ValueError)


def test_connection_without_the_key_field_is_not_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # the key id belongs in `login`; a password alone is half a pair
    monkeypatch.setenv(ALPACA_CONN, json.dumps({"conn_type": "http", "password": "conn-secret"}))
    with pytest.raises(MissingCredentialsError):
        provider_credentials("alpaca", env={})


def test_without_airflow_missing_credentials_is_still_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINNHUB_CONN, json.dumps({"conn_type": "http", "password": "fh-conn-key"}))
    # None in sys.modules makes `from airflow.sdk import ...` raise ImportError
    monkeypatch.setitem(sys.modules, "airflow", None)
    monkeypatch.setitem(sys.modules, "airflow.sdk", None)
    with pytest.raises(MissingCredentialsError, match="FINNHUB_API_KEY"):
        provider_credentials("finnhub", env={})


async def test_kinds_without_a_credential_source_build_without_any() -> None:
    for kind in ("yahoo", "synthetic"):
        assert spec_for(kind).credentials is None
        adapter = build_provider(kind, ProviderPolicy())  # no credentials in the environment
        await adapter.aclose()


def test_secrets_stay_out_of_reprs() -> None:
    creds = Credentials(key="visible-if-leaked-1", secret="visible-if-leaked-2")
    assert "visible-if-leaked" not in repr(creds)
    assert "visible-if-leaked" not in str(creds)


def test_airflow_env_connections_are_read_without_importing_airflow() -> None:
    env_json = {"AIRFLOW_CONN_ALPACA_DEFAULT": '{"conn_type": "http", "login": "kid", "password": "sek"}'}
    creds = provider_credentials("alpaca", env_json, use_airflow=False)
    assert (creds.key, creds.secret) == ("kid", "sek")
    env_uri = {"AIRFLOW_CONN_FINNHUB_DEFAULT": "http://:s%2Fecret@finnhub.io"}
    assert provider_credentials("finnhub", env_uri, use_airflow=False).key == "s/ecret"
    with pytest.raises(MissingCredentialsError):
        provider_credentials("finnhub", {}, use_airflow=False)
