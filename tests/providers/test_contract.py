"""The contract every HTTP vendor adapter meets, run over each vendor's recorded answers.

A local pytest-httpserver answers with the bodies in tests/fixtures/providers/ (real HTTP);
`vendors/` says, per vendor, what each body must become. Each vendor's own quirks are
in test_<vendor>.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from market_data.policy.schema import ProviderPolicy
from market_data.providers import build_provider, spec_for
from market_data.providers.base import BarRequest, Provider
from market_data.providers.errors import (
    EmptyDataError,
    ProviderError,
    RateLimitedError,
    RequestError,
    ServerError,
    should_retry,
)

from .conftest import MakeAdapter
from .support import ErrorCase, capture_http_logs, wait_until
from .vendors import BarsCase, QuotesCase, Vendor, alpaca, finnhub, yahoo

VENDORS = [finnhub.VENDOR, yahoo.VENDOR, alpaca.VENDOR]
CREDENTIAL_VARS = ("FINNHUB_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY")


def each_vendor(vendors: list[Vendor] = VENDORS) -> Any:
    return pytest.mark.parametrize("vendor", vendors, ids=[v.kind for v in vendors])


def each_case(attribute: str) -> Any:
    params = [
        pytest.param(v, case, id=f"{v.kind}-{case.id}") for v in VENDORS for case in getattr(v, attribute)
    ]
    return pytest.mark.parametrize(("vendor", "case"), params)


def serve(httpserver: HTTPServer, path: str, case: ErrorCase) -> None:
    httpserver.expect_request(path).respond_with_data(
        case.body, status=case.status, headers=case.headers, content_type=case.content_type
    )


def one_symbol_too_many(vendor: Vendor) -> list[str]:
    return [f"S{i}" for i in range(vendor.capabilities.max_symbols_per_request + 1)]


@each_vendor()
async def test_the_adapter_is_a_provider_with_its_kinds_facts(vendor: Vendor) -> None:
    adapter = vendor.adapter(vendor.credentials)
    await adapter.aclose()
    assert isinstance(adapter, Provider)
    assert adapter.name == vendor.kind
    assert adapter.default_calls_per_minute == vendor.default_calls_per_minute
    assert adapter.capabilities == vendor.capabilities
    assert str(adapter._http._client.base_url).rstrip("/") == vendor.default_base_url
    # the kind's SPEC says the same without building a client
    spec = spec_for(vendor.kind)
    assert spec.capabilities_for(ProviderPolicy()) == vendor.capabilities
    assert spec.default_calls_per_minute == vendor.default_calls_per_minute


@each_case("bars")
async def test_recorded_bars_become_the_calendars_bars(
    vendor: Vendor, case: BarsCase, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(vendor.bars_path).respond_with_data(case.body, content_type="application/json")

    bars = await make(vendor, now=case.now).fetch_bars(case.request)

    assert bars == case.expected
    assert len(httpserver.log) == 1
    sent, _ = httpserver.log[0]
    args = sent.args.to_dict()
    if case.exact_query:
        assert args == case.query
    else:
        assert args | case.query == args, args
    for header, value in vendor.request_headers.items():
        assert sent.headers[header] == value


@each_case("quotes")
async def test_recorded_quotes_become_quotes(
    vendor: Vendor, case: QuotesCase, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(vendor.quotes_path).respond_with_data(
        case.body, content_type="application/json"
    )

    quotes = await make(vendor).fetch_quotes(case.symbols, case.exchange_mic)

    assert quotes == case.expected
    sent, _ = httpserver.log[0]
    assert sent.args.to_dict() == case.query
    for header, value in vendor.request_headers.items():
        assert sent.headers[header] == value


@each_vendor()
async def test_an_answer_with_nothing_to_quote_is_empty_data(
    vendor: Vendor, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    case = vendor.quote_without_data
    httpserver.expect_request(vendor.quotes_path).respond_with_data(
        case.body, content_type="application/json"
    )
    with pytest.raises(EmptyDataError) as caught:
        await make(vendor).fetch_quotes(case.symbols, case.exchange_mic)
    assert not should_retry(caught.value)


@each_vendor()
async def test_more_symbols_than_one_call_takes_are_refused_without_a_call(
    vendor: Vendor, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    adapter = make(vendor)
    request = BarRequest(
        symbols=tuple(one_symbol_too_many(vendor)),
        exchange_mic="XNAS",
        interval=vendor.error_request.interval,
        start=vendor.error_request.start,
        end=vendor.error_request.end,
    )
    with pytest.raises(RequestError):
        await adapter.fetch_bars(request)
    with pytest.raises(RequestError):
        await adapter.fetch_quotes(one_symbol_too_many(vendor), "XNAS")
    assert httpserver.log == []


@each_case("errors")
async def test_error_answers_map_onto_the_error_tree(
    vendor: Vendor, case: ErrorCase, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    serve(httpserver, vendor.bars_path, case)
    with pytest.raises(ProviderError) as caught:
        await make(vendor).fetch_bars(vendor.error_request)
    exc = caught.value
    assert type(exc) is case.error
    assert exc.provider == vendor.kind
    assert should_retry(exc) is case.retryable
    assert case.message_part in exc.message
    if case.status != 200:
        assert exc.status == case.status
    if isinstance(exc, RateLimitedError):
        assert exc.retry_after == case.retry_after


@each_vendor()
async def test_quote_errors_map_the_same_way(
    vendor: Vendor, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    case = vendor.quote_error
    serve(httpserver, vendor.quotes_path, case)
    with pytest.raises(ProviderError) as caught:
        await make(vendor).fetch_quotes(["AAPL"], "XNAS")
    assert type(caught.value) is case.error
    assert case.message_part in caught.value.message


@each_vendor()
async def test_a_timeout_is_a_retryable_server_error(
    vendor: Vendor, make: MakeAdapter, httpserver: HTTPServer
) -> None:
    answer = threading.Event()

    def slow(request: Request) -> Response:
        answer.wait(timeout=5)
        return Response(vendor.bars[0].body)

    httpserver.expect_request(vendor.bars_path).respond_with_handler(slow)
    with pytest.raises(ServerError, match="timed out") as caught:
        await make(vendor, timeout=0.1).fetch_bars(vendor.error_request)
    assert should_retry(caught.value)
    # let the server finish that request now, not during the next test
    answer.set()
    await asyncio.to_thread(wait_until, lambda: len(httpserver.log) == 1)


@each_vendor()
async def test_a_refused_connection_is_a_retryable_server_error(vendor: Vendor, make: MakeAdapter) -> None:
    adapter = make(vendor, base_url=f"http://127.0.0.1:1{vendor.base_path}")
    with pytest.raises(ServerError) as on_bars:
        await adapter.fetch_bars(vendor.error_request)
    with pytest.raises(ServerError) as on_quotes:
        await adapter.fetch_quotes(["AAPL"], "XNAS")
    assert should_retry(on_bars.value) and should_retry(on_quotes.value)


@each_vendor([v for v in VENDORS if v.secrets])
async def test_credentials_never_reach_urls_logs_or_errors(
    vendor: Vendor,
    make: MakeAdapter,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture_http_logs(caplog, monkeypatch)
    refused = vendor.errors[0]  # the vendor's recorded 401
    httpserver.expect_ordered_request(vendor.bars_path).respond_with_data(
        vendor.bars[0].body, content_type="application/json"
    )
    for path in (vendor.quotes_path, vendor.bars_path):
        httpserver.expect_ordered_request(path).respond_with_data(
            refused.body, status=refused.status, content_type=refused.content_type
        )
    adapter = make(vendor)
    await adapter.fetch_bars(vendor.bars[0].request)
    errors = []
    for call in (adapter.fetch_quotes(["AAPL"], "XNAS"), adapter.fetch_bars(vendor.error_request)):
        with pytest.raises(ProviderError) as caught:
            await call
        errors.append(caught.value)

    assert "HTTP Request: GET" in caplog.text  # httpx did log the requests...
    assert len(httpserver.log) == 3
    for secret in vendor.secrets:
        assert secret not in caplog.text  # ...without the credentials
        for exc in errors:
            assert secret not in str(exc) and secret not in repr(exc)
        for request, _ in httpserver.log:
            assert secret not in request.url
            assert not any(secret in value for value in request.args.values())


@each_vendor()
async def test_the_spec_builds_the_adapter_from_the_policy_and_the_environment(
    vendor: Vendor, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in vendor.env.items():
        monkeypatch.setenv(var, value)
    case = vendor.quotes[0]
    httpserver.expect_request(vendor.quotes_path).respond_with_data(
        case.body, content_type="application/json"
    )
    base_url = httpserver.url_for(vendor.base_path or "/")

    # the policy's name differs from the kind: `kind` picks the adapter, `name` labels it
    adapter = build_provider(f"{vendor.kind}_eu", ProviderPolicy(kind=vendor.kind, base_url=base_url))
    try:
        quotes = await adapter.fetch_quotes(case.symbols, case.exchange_mic)
    finally:
        await adapter.aclose()

    assert type(adapter) is vendor.adapter
    assert adapter.name == f"{vendor.kind}_eu"
    assert [q.last for q in quotes] == [q.last for q in case.expected]
    assert {q.provider for q in quotes} == {f"{vendor.kind}_eu"}
    sent, _ = httpserver.log[0]
    for header, value in vendor.request_headers.items():
        assert sent.headers[header] == value
