"""Adapter kinds are modules exporting a SPEC: found by name, lazily, with nothing to register.

The fake vendor here is one module written into a temporary directory on the providers
package's path: the policy validates its kind and options, the registry builds it from the
policy and routes real HTTP calls to it, /stats/providers reports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

import market_data.providers as providers
from market_data.policy.schema import ProviderPolicy, SyntheticFaults
from market_data.policy.validation import checked_policy, validate_policy_text
from market_data.providers import MissingCredentialsError, UnknownAdapterError, build_provider, spec_for
from market_data.providers.base import BarRequest
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Bar, Interval, Quote
from market_data.registry import ProviderRegistry
from market_data.registry.status import static_provider_info

KINDS = ("synthetic", "finnhub", "yahoo", "alpaca")
CREDENTIAL_VARS = ("FINNHUB_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*CREDENTIAL_VARS, "AIRFLOW_CONN_FINNHUB_DEFAULT", "AIRFLOW_CONN_ALPACA_DEFAULT"):
        monkeypatch.delenv(var, raising=False)


def test_each_kind_is_the_module_that_exports_its_spec() -> None:
    for kind in KINDS:
        assert spec_for(kind).kind == kind


@pytest.mark.parametrize("kind", ["polygon", "http", "base", "credentials", "_private", "Yahoo", "a.b"])
def test_unknown_kinds_and_modules_without_a_spec_are_unknown_adapters(kind: str) -> None:
    with pytest.raises(UnknownAdapterError, match=r"unknown adapter"):
        spec_for(kind)
    with pytest.raises(UnknownAdapterError, match=rf"providers\.p\.kind: unknown adapter {kind!r}"):
        build_provider("p", ProviderPolicy(kind=kind))


@pytest.mark.usefixtures("no_credentials")
def test_capabilities_need_no_client_and_no_credentials() -> None:
    for kind in KINDS:
        assert spec_for(kind).capabilities_for(ProviderPolicy()).supports("quotes")
    assert spec_for("finnhub").capabilities_for(ProviderPolicy()).supports("bars:1h")
    assert spec_for("alpaca").capabilities_for(ProviderPolicy()).max_symbols_per_request == 100


def test_synthetic_capabilities_follow_its_faults() -> None:
    spec = spec_for("synthetic")
    default = spec.capabilities_for(ProviderPolicy())
    assert default.max_symbols_per_request == 50
    assert default.quotes and default.supports("bars:1d")
    narrow = spec.capabilities_for(ProviderPolicy(faults=SyntheticFaults(symbols_per_request=7)))
    assert narrow.max_symbols_per_request == 7
    # the same answer as a built provider's (no env overrides set in tests)
    assert narrow == SyntheticProvider("s", SyntheticFaults(symbols_per_request=7)).capabilities
    assert spec.default_calls_per_minute == SyntheticProvider.default_calls_per_minute == 6000


async def test_a_synthetic_provider_is_built_under_its_policy_name() -> None:
    adapter = build_provider("synthetic_primary", ProviderPolicy(kind="synthetic"))
    await adapter.aclose()
    assert type(adapter) is SyntheticProvider and adapter.name == "synthetic_primary"


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("kind", ["finnhub", "alpaca"])
def test_missing_credentials_raise_a_dedicated_error(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow", None)  # no Airflow connection either
    monkeypatch.setitem(sys.modules, "airflow.sdk", None)
    with pytest.raises(MissingCredentialsError) as caught:
        build_provider(kind, ProviderPolicy())
    assert caught.value.kind == kind


def run_python(code: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CREDENTIAL_VARS and k != "AIRFLOW_CONN_FINNHUB_DEFAULT"
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_the_package_imports_and_reports_missing_credentials_without_airflow() -> None:
    code = """
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
    assert run_python(code) == "missing: finnhub"


def test_a_synthetic_only_process_never_imports_the_http_adapters() -> None:
    code = """
        import sys
        from market_data.policy import parse_policy
        from market_data.policy.validation import validate_policy
        from market_data.registry import ProviderRegistry
        policy = parse_policy('[tiers.T0]\\nintervals = ["1m"]\\nbar_cadence = "1m"\\n'
                              '[providers.synth]\\nkind = "synthetic"\\n')
        assert validate_policy(policy) == []
        assert list(ProviderRegistry(policy).adapters) == ["synth"]
        print(sorted(m for m in sys.modules if m == "httpx" or m.startswith("market_data.providers.")))
        """
    assert run_python(code) == str(
        [
            "market_data.providers.base",
            "market_data.providers.credentials",
            "market_data.providers.errors",
            "market_data.providers.synthetic",
            "market_data.providers.synthetic_history",
        ]
    )


# -- a vendor added with one module ------------------------------------------------------
FAKE_VENDOR = '''
"""A vendor that exists only in a test: one module, no edit anywhere else."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from market_data.providers.alignment import from_epoch
from market_data.providers.base import BarRequest, Capabilities, ProviderSpec
from market_data.providers.credentials import Credentials, CredentialSource
from market_data.providers.http import VendorAdapter, decode_payload, single_symbol
from market_data.records import Bar, Interval, Quote


class Price(msgspec.Struct):
    price: float
    time: int


class Candle(msgspec.Struct):
    t: int
    o: float
    h: float
    l: float
    c: float
    v: float


_PRICE = msgspec.json.Decoder(Price)
_CANDLES = msgspec.json.Decoder(list[Candle])


class FakeVendorProvider(VendorAdapter):
    kind = "fakevendor"
    default_base_url = "https://api.fakevendor.invalid"
    capabilities = Capabilities(bar_intervals=frozenset({Interval.D1}), quotes=True)
    default_calls_per_minute = 42

    def headers(self, credentials: Credentials | None) -> dict[str, str]:
        return {"X-Fake-Key": self.required(credentials).key, "X-Region": self.options.get("region", "us")}

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        symbol = single_symbol(self.name, symbols)
        body = await self._http.get("/price", {"symbol": symbol})
        price = decode_payload(self.name, _PRICE, body, "price")
        return [Quote(symbol=symbol, ts=from_epoch(price.time), provider=self.name, last=price.price)]

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        symbol = single_symbol(self.name, request.symbols)
        body = await self._http.get("/candles", {"symbol": symbol})
        candles = decode_payload(self.name, _CANDLES, body, "candles")
        vendor_bars = [
            self.vendor_bar(symbol, request, from_epoch(c.t), (c.o, c.h, c.l, c.c), c.v) for c in candles
        ]
        return self.calendar_bars(vendor_bars, request)


SPEC = ProviderSpec(
    kind="fakevendor",
    capabilities=FakeVendorProvider.capabilities,
    default_calls_per_minute=FakeVendorProvider.default_calls_per_minute,
    options={"region": frozenset({"eu", "us"})},
    credentials=CredentialSource(
        key_env="FAKEVENDOR_API_KEY", conn_id="fakevendor_default", key_field="password"
    ),
    factory=FakeVendorProvider.from_policy,
)
'''
FAKE_KEY = "fake-vendor-key-1234"


@pytest.fixture
def on_the_providers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory searched for adapter modules like the package's own (modules imported from
    it are forgotten afterwards)."""
    monkeypatch.setattr(providers, "__path__", [*providers.__path__, str(tmp_path)])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("market_data.providers."):
            del sys.modules[name]
            if hasattr(providers, name.rsplit(".", 1)[1]):
                delattr(providers, name.rsplit(".", 1)[1])


def fake_policy_text(base_url: str, extra: str = "") -> str:
    return (
        '[tiers.T0]\nintervals = ["1d"]\nbar_cadence = "1d"\nlookback = "3d"\nquotes = true\n'
        f'[providers.fake]\nkind = "fakevendor"\nbase_url = "{base_url}"\n'
        f'options = {{ region = "eu" }}\n{extra}'
    )


async def test_a_vendor_added_as_one_module_is_validated_built_and_routed_to(
    on_the_providers_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (on_the_providers_path / "fakevendor.py").write_text(FAKE_VENDOR)
    monkeypatch.setenv("FAKEVENDOR_API_KEY", FAKE_KEY)
    text = fake_policy_text(httpserver.url_for("/"))
    # the policy knows the kind, its options and what it serves from its SPEC alone
    assert validate_policy_text(text) == []
    bad = text.replace('{ region = "eu" }', '{ region = "mars", colour = "red" }')
    problems = {
        p.path: p.reason
        for p in validate_policy_text(bad + 'capabilities = ["quotes", "bars:1d", "bars:1m"]\n')
    }
    assert problems == {
        "providers.fake.options.region": "expected one of eu, us",
        "providers.fake.options.colour": "not an option of the fakevendor adapter",
        "providers.fake.capabilities[2]": "the fakevendor adapter cannot serve bars:1m",
    }
    httpserver.expect_request("/price", query_string={"symbol": "AAPL"}).respond_with_json(
        {"price": 226.78, "time": 1727899200}
    )
    httpserver.expect_request("/candles", query_string={"symbol": "AAPL"}).respond_with_json(
        [  # New York midnights, as vendors stamp days
            {"t": 1727755200, "o": 229.5, "h": 229.65, "l": 223.74, "c": 226.21, "v": 63285048},
            {"t": 1727841600, "o": 225.89, "h": 227.37, "l": 223.02, "c": 226.78, "v": 32880605},
        ]
    )

    registry = ProviderRegistry(checked_policy(text))  # builds its adapters from the policy
    try:
        quoted = await registry.fetch_quotes(["AAPL"], "XNAS")
        request = BarRequest(
            symbols=("AAPL",),
            exchange_mic="XNAS",
            interval=Interval.D1,
            start=datetime(2024, 10, 1, tzinfo=UTC),
            end=datetime(2024, 10, 3, tzinfo=UTC),
        )
        barred = await registry.fetch_bars(request)
        (status,) = await registry.statuses()
    finally:
        await registry.aclose()

    assert quoted.provider == "fake"
    assert quoted.value == [Quote(symbol="AAPL", ts=datetime(2024, 10, 2, 20, 0, tzinfo=UTC), provider="fake",
                                  last=226.78)]  # fmt: skip
    assert barred.provider == "fake"
    day = {"symbol": "AAPL", "interval": Interval.D1, "provider": "fake"}
    assert barred.value == [
        Bar(**day, ts=datetime(2024, 10, 1, tzinfo=UTC), open=229.5, high=229.65, low=223.74, close=226.21,
            volume=63285048),
        Bar(**day, ts=datetime(2024, 10, 2, tzinfo=UTC), open=225.89, high=227.37, low=223.02, close=226.78,
            volume=32880605),
    ]  # fmt: skip
    assert len(httpserver.log) == 2
    for sent, _ in httpserver.log:
        assert (sent.headers["X-Fake-Key"], sent.headers["X-Region"]) == (FAKE_KEY, "eu")
    assert (status.name, status.kind, status.available, status.calls_per_minute) == (
        "fake",
        "fakevendor",
        True,
        42,
    )
    assert status.capabilities == ["quotes", "bars:1d"]
    assert status.health.samples == 2 and status.health.error_rate == 0.0

    monkeypatch.delenv("FAKEVENDOR_API_KEY")
    cfg = checked_policy(text).providers["fake"]
    assert static_provider_info("fake", cfg).reason == (
        "no credentials: set FAKEVENDOR_API_KEY or the Airflow connection 'fakevendor_default'"
    )


def test_a_spec_must_carry_its_modules_name_as_its_kind(on_the_providers_path: Path) -> None:
    (on_the_providers_path / "misnamed.py").write_text(FAKE_VENDOR)
    with pytest.raises(TypeError, match=r"misnamed\.SPEC\.kind is 'fakevendor'"):
        spec_for("misnamed")
