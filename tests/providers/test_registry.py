"""The adapter registry: factories, capabilities without clients, and Airflow-free imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from pytest_httpserver import HTTPServer

from market_data.policy.schema import ProviderPolicy, SyntheticFaults
from market_data.providers import (
    ADAPTERS,
    MissingCredentialsError,
    UnknownAdapterError,
    adapter_capabilities,
    alpaca,
    build_provider,
    finnhub,
    yahoo,
)
from market_data.providers.alpaca import AlpacaProvider
from market_data.providers.base import Provider
from market_data.providers.finnhub import FinnhubProvider
from market_data.providers.synthetic import SyntheticProvider
from market_data.providers.yahoo import YahooProvider

from .support import fixture_bytes

CREDENTIAL_VARS = ("FINNHUB_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_FINNHUB_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ALPACA_DEFAULT", raising=False)


def test_every_adapter_kind_is_registered() -> None:
    assert set(ADAPTERS) == {"synthetic", "finnhub", "yahoo", "alpaca"}


async def test_build_provider_builds_each_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINNHUB_API_KEY", "fh-key")
    monkeypatch.setenv("ALPACA_API_KEY_ID", "PKID")
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", "secret")
    expected = {
        "synthetic": SyntheticProvider,
        "finnhub": FinnhubProvider,
        "yahoo": YahooProvider,
        "alpaca": AlpacaProvider,
    }
    for kind, cls in expected.items():
        # the policy's name differs from the kind: `kind` picks the adapter, `name` labels it
        adapter = build_provider(f"{kind}_primary", ProviderPolicy(kind=kind))
        assert type(adapter) is cls
        assert isinstance(adapter, Provider)
        assert adapter.name == f"{kind}_primary"
        await adapter.aclose()


async def test_policy_base_url_reaches_the_adapter(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v8/finance/chart/AAPL").respond_with_data(
        fixture_bytes("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json"), content_type="application/json"
    )
    adapter = build_provider("yahoo", ProviderPolicy(base_url=httpserver.url_for("/")))
    try:
        quotes = await adapter.fetch_quotes(["AAPL"], "XNAS")
    finally:
        await adapter.aclose()
    assert quotes[0].last == 244.87
    assert len(httpserver.log) == 1


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("kind", ["finnhub", "alpaca"])
def test_missing_credentials_raise_a_dedicated_error(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow", None)  # no Airflow connection either
    monkeypatch.setitem(sys.modules, "airflow.sdk", None)
    with pytest.raises(MissingCredentialsError) as caught:
        build_provider(kind, ProviderPolicy())
    assert caught.value.kind == kind


def test_unknown_kind() -> None:
    with pytest.raises(UnknownAdapterError, match=r"providers\.polygon\.kind"):
        build_provider("polygon", ProviderPolicy())
    with pytest.raises(UnknownAdapterError):
        adapter_capabilities("polygon", ProviderPolicy())


@pytest.mark.usefixtures("no_credentials")
def test_capabilities_need_no_client_and_no_credentials() -> None:
    assert adapter_capabilities("finnhub", ProviderPolicy()) is finnhub.CAPABILITIES
    assert adapter_capabilities("yahoo", ProviderPolicy()) is yahoo.CAPABILITIES
    assert adapter_capabilities("alpaca", ProviderPolicy()) is alpaca.CAPABILITIES
    assert adapter_capabilities("alpaca", ProviderPolicy()).max_symbols_per_request == 100
    assert adapter_capabilities("finnhub", ProviderPolicy()).supports("bars:1h")
    assert adapter_capabilities("yahoo", ProviderPolicy()).supports("quotes")


def test_synthetic_capabilities_follow_its_faults() -> None:
    default = adapter_capabilities("synthetic", ProviderPolicy())
    assert default.max_symbols_per_request == 50
    assert default.quotes and default.supports("bars:1d")
    narrow = adapter_capabilities("synthetic", ProviderPolicy(faults=SyntheticFaults(symbols_per_request=7)))
    assert narrow.max_symbols_per_request == 7
    # the same answer as a built provider's (no env overrides set in tests)
    built = SyntheticProvider("s", SyntheticFaults(symbols_per_request=7))
    assert narrow == built.capabilities


def test_the_package_imports_and_reports_missing_credentials_without_airflow() -> None:
    code = textwrap.dedent(
        """
        import sys
        import market_data.providers as providers
        from market_data.providers import alpaca, finnhub, yahoo, credentials
        from market_data.policy.schema import ProviderPolicy
        assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules), "airflow imported"
        sys.modules["airflow"] = None  # as if Airflow were not installed
        try:
            providers.build_provider("finnhub", ProviderPolicy())
        except providers.MissingCredentialsError as exc:
            print("missing:", exc.kind)
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CREDENTIAL_VARS and k != "AIRFLOW_CONN_FINNHUB_DEFAULT"
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "missing: finnhub"
