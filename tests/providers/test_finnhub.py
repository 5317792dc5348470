"""Finnhub adapter against a local server answering with Finnhub's recorded bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from market_data.providers import finnhub
from market_data.providers.base import BarRequest, Provider
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    EmptyDataError,
    ProviderError,
    RateLimitedError,
    RequestError,
    ServerError,
    should_retry,
)
from market_data.providers.finnhub import FinnhubProvider
from market_data.records import Bar, Interval, Quote

from .support import (
    PLAIN_TEXT_200,
    ErrorCase,
    capture_http_logs,
    encode,
    fixture_bytes,
    fixture_json,
    http_date,
)

API_KEY = "fh-test-key-5f3a9c0d"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CANDLE = "/api/v1/stock/candle"
QUOTE = "/api/v1/quote"


def daily(symbol: str = "AAPL", start: str = "2019-09-24", end: str = "2019-09-27") -> BarRequest:
    return BarRequest(
        symbols=(symbol,),
        exchange_mic="XNAS",
        interval=Interval.D1,
        start=datetime.fromisoformat(start).replace(tzinfo=UTC),
        end=datetime.fromisoformat(end).replace(tzinfo=UTC),
    )


@pytest.fixture
async def provider(httpserver: HTTPServer) -> AsyncIterator[FinnhubProvider]:
    p = FinnhubProvider(API_KEY, base_url=httpserver.url_for("/api/v1"), clock=lambda: NOW)
    yield p
    await p.aclose()


async def test_adapter_satisfies_the_provider_protocol() -> None:
    p = FinnhubProvider(API_KEY)
    await p.aclose()
    assert isinstance(p, Provider)
    assert p.name == "finnhub"
    assert p.default_calls_per_minute == 60
    assert p.capabilities.max_symbols_per_request == 1
    assert p.capabilities.bar_intervals == frozenset(Interval)
    assert p.capabilities.quotes
    assert p.capabilities.max_range[Interval.M1] == timedelta(days=30)
    assert Interval.D1 not in p.capabilities.max_range
    assert str(p._http._client.base_url).rstrip("/") == "https://finnhub.io/api/v1"


async def test_daily_candles_decode_to_session_dated_bars(
    provider: FinnhubProvider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CANDLE).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_ok_docs_sample.json"), content_type="application/json"
    )

    bars = await provider.fetch_bars(daily())

    # Finnhub stamps a day at New York midnight (04:00Z); ours is the session date at 00:00Z.
    assert bars == [
        Bar(symbol="AAPL", interval=Interval.D1, ts=datetime(2019, 9, 24, tzinfo=UTC), open=221.03,
            high=222.49, low=217.19, close=217.68, volume=33463820, provider="finnhub"),
        Bar(symbol="AAPL", interval=Interval.D1, ts=datetime(2019, 9, 25, tzinfo=UTC), open=218.55,
            high=221.5, low=217.1402, close=221.03, volume=24018876, provider="finnhub"),
        Bar(symbol="AAPL", interval=Interval.D1, ts=datetime(2019, 9, 26, tzinfo=UTC), open=220.0,
            high=220.94, low=218.83, close=219.89, volume=20730608, provider="finnhub"),
    ]  # fmt: skip
    request, _ = httpserver.log[0]
    # a day of margin each side: a vendor's day stamp may precede the session date in UTC
    assert request.args.to_dict() == {
        "symbol": "AAPL",
        "resolution": "D",
        "from": str(int(datetime(2019, 9, 23, tzinfo=UTC).timestamp())),
        "to": str(int(datetime(2019, 9, 28, tzinfo=UTC).timestamp())),
    }
    assert request.headers["X-Finnhub-Token"] == API_KEY


async def test_bars_outside_the_range_or_not_yet_complete_are_dropped(httpserver: HTTPServer) -> None:
    httpserver.expect_request(CANDLE).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_ok_docs_sample.json"), content_type="application/json"
    )
    # 2019-09-26 15:00Z: that session is still open, so its daily bar is not final yet
    during_session = FinnhubProvider(
        API_KEY,
        base_url=httpserver.url_for("/api/v1"),
        clock=lambda: datetime(2019, 9, 26, 15, 0, tzinfo=UTC),
    )
    try:
        bars = await during_session.fetch_bars(daily(start="2019-09-25", end="2019-09-30"))
    finally:
        await during_session.aclose()
    assert [b.ts for b in bars] == [datetime(2019, 9, 25, tzinfo=UTC)]


async def test_hourly_bars_come_from_30_minute_candles(
    provider: FinnhubProvider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CANDLE).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_60_issue309.json"), content_type="application/json"
    )
    start = datetime(2020, 7, 2, 18, 30, tzinfo=UTC)
    end = datetime(2020, 7, 2, 20, 0, tzinfo=UTC)
    request = BarRequest(symbols=("AAPL",), exchange_mic="XNAS", interval=Interval.H1, start=start, end=end)

    bars = await provider.fetch_bars(request)

    # 18:30Z and 19:30Z are session-aligned hours (open 13:30Z), so each passes unchanged
    assert bars == [
        Bar(symbol="AAPL", interval=Interval.H1, ts=start, open=366.95, high=367.31, low=366.21,
            close=366.5698, volume=2113793, provider="finnhub"),
        Bar(symbol="AAPL", interval=Interval.H1, ts=datetime(2020, 7, 2, 19, 30, tzinfo=UTC),
            open=366.59, high=367.0, low=365.93, close=366.19, volume=656192, provider="finnhub"),
    ]  # fmt: skip
    sent, _ = httpserver.log[0]
    assert sent.args["resolution"] == "30"
    # the last hour starting before `end` needs candles up to an hour after it
    assert int(sent.args["to"]) == int((end + timedelta(hours=1)).timestamp())


async def test_no_data_is_an_empty_list(provider: FinnhubProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(CANDLE).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_no_data.json"), content_type="application/json"
    )
    assert await provider.fetch_bars(daily()) == []


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("quote_docs_sample.json", Quote(symbol="AAPL", ts=datetime(2020, 2, 25, 14, 30, tzinfo=UTC),
                                         provider="finnhub", last=261.74)),
        ("quote_recorded_2020.json", Quote(symbol="AAPL", ts=datetime(2020, 3, 19, 13, 30, tzinfo=UTC),
                                           provider="finnhub", last=250.195)),
    ],
)  # fmt: skip
async def test_quote(
    provider: FinnhubProvider, httpserver: HTTPServer, fixture: str, expected: Quote
) -> None:
    httpserver.expect_request(QUOTE, query_string={"symbol": "AAPL"}).respond_with_data(
        fixture_bytes("finnhub", fixture), content_type="application/json"
    )
    assert await provider.fetch_quotes(["AAPL"], "XNAS") == [expected]


async def test_all_zero_quote_is_empty_data(provider: FinnhubProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(QUOTE).respond_with_data(
        fixture_bytes("finnhub", "quote_all_zero_issue332.json"), content_type="application/json"
    )
    with pytest.raises(EmptyDataError) as caught:
        await provider.fetch_quotes(["^DJI"], "XNYS")
    assert not should_retry(caught.value)


async def test_more_than_one_symbol_is_refused_without_a_call(
    provider: FinnhubProvider, httpserver: HTTPServer
) -> None:
    with pytest.raises(RequestError):
        await provider.fetch_bars(
            BarRequest(
                symbols=("AAPL", "MSFT"),
                exchange_mic="XNAS",
                interval=Interval.D1,
                start=datetime(2019, 9, 24, tzinfo=UTC),
                end=datetime(2019, 9, 27, tzinfo=UTC),
            )
        )
    with pytest.raises(RequestError):
        await provider.fetch_quotes(["AAPL", "MSFT"], "XNAS")
    assert httpserver.log == []


candle_ok = fixture_json("finnhub", "stock_candle_ok_docs_sample.json")
ERRORS = [
    ErrorCase(
        "401",
        401,
        fixture_bytes("finnhub", "error_401_invalid_api_key.json"),
        AuthError,
        False,
        message_part="Invalid API key.",
    ),
    ErrorCase(
        "403",
        403,
        fixture_bytes("finnhub", "error_403_no_access.json"),
        AuthError,
        False,
        message_part="You don't have access to this resource.",
    ),
    ErrorCase(
        "429-retry-after-seconds",
        429,
        fixture_bytes("finnhub", "error_429_api_limit_reached.json"),
        RateLimitedError,
        True,
        headers={"Retry-After": "17"},
        message_part="API limit reached",
    ),
    ErrorCase(
        "429-retry-after-date",
        429,
        fixture_bytes("finnhub", "error_429_api_limit_reached.json"),
        RateLimitedError,
        True,
        headers={"Retry-After": http_date(NOW + timedelta(seconds=90))},
    ),
    ErrorCase(
        "429-no-retry-after-plain-text",
        429,
        fixture_bytes("finnhub", "error_429_no_token.txt"),
        RateLimitedError,
        True,
        content_type="text/plain",
        message_part="API limit reached. Please sign up",
    ),
    ErrorCase("500", 500, b"", ServerError, True),
    ErrorCase("502-html", 502, b"<html>Bad Gateway</html>", ServerError, True, content_type="text/html"),
    # Finnhub's error shape, as in the recorded 401/403 bodies (no 4xx of this kind was recorded)
    ErrorCase(
        "422", 422, b'{"error": "Wrong resolution"}', RequestError, False, message_part="Wrong resolution"
    ),
    ErrorCase(
        "malformed-json",
        200,
        fixture_bytes("finnhub", "stock_candle_ok_docs_sample.json")[:60],
        BadPayloadError,
        False,
    ),
    ErrorCase(
        "plain-text-200",
        200,
        PLAIN_TEXT_200,
        BadPayloadError,
        False,
        content_type="text/plain",
        message_part="You have run over your 500 symbol look up",
    ),
    # a real Finnhub body of the wrong endpoint: a quote has no `s` or arrays
    ErrorCase("wrong-shape", 200, fixture_bytes("finnhub", "quote_docs_sample.json"), BadPayloadError, False),
    ErrorCase(
        "arrays-differ-in-length",
        200,
        encode({**candle_ok, "c": candle_ok["c"][:2]}),
        BadPayloadError,
        False,
        message_part="differ in length",
    ),
    ErrorCase("unknown-status", 200, encode({**candle_ok, "s": "error"}), BadPayloadError, False),
    ErrorCase("redirect", 302, b"", BadPayloadError, False, headers={"Location": "https://example.com/"}),
]
RETRY_AFTER = {"429-retry-after-seconds": 17.0, "429-retry-after-date": 90.0}


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
async def test_error_answers_map_onto_the_error_tree(
    provider: FinnhubProvider, httpserver: HTTPServer, case: ErrorCase
) -> None:
    httpserver.expect_request(CANDLE).respond_with_data(
        case.body, status=case.status, headers=case.headers, content_type=case.content_type
    )
    with pytest.raises(ProviderError) as caught:
        await provider.fetch_bars(daily())
    exc = caught.value
    assert type(exc) is case.error
    assert exc.provider == "finnhub"
    assert should_retry(exc) is case.retryable
    assert case.message_part in exc.message
    if case.status != 200:
        assert exc.status == case.status
    if isinstance(exc, RateLimitedError):
        assert exc.retry_after == RETRY_AFTER.get(case.id)


async def test_quote_errors_map_the_same_way(provider: FinnhubProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(QUOTE).respond_with_data(
        fixture_bytes("finnhub", "error_401_invalid_api_key.json"),
        status=401,
        content_type="application/json",
    )
    with pytest.raises(AuthError):
        await provider.fetch_quotes(["AAPL"], "XNAS")


async def test_timeout_is_a_server_error(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response(fixture_bytes("finnhub", "stock_candle_no_data.json"))

    httpserver.expect_request(CANDLE).respond_with_handler(slow)
    p = FinnhubProvider(API_KEY, base_url=httpserver.url_for("/api/v1"), timeout=0.1, clock=lambda: NOW)
    try:
        with pytest.raises(ServerError, match="timed out") as caught:
            await p.fetch_bars(daily())
    finally:
        await p.aclose()
    assert should_retry(caught.value)


async def test_connection_refused_is_a_server_error() -> None:
    p = FinnhubProvider(API_KEY, base_url="http://127.0.0.1:1/api/v1", clock=lambda: NOW)
    try:
        with pytest.raises(ServerError) as caught:
            await p.fetch_quotes(["AAPL"], "XNAS")
    finally:
        await p.aclose()
    assert should_retry(caught.value)


async def test_api_key_never_reaches_urls_logs_or_errors(
    provider: FinnhubProvider,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture_http_logs(caplog, monkeypatch)
    httpserver.expect_oneshot_request(CANDLE).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_ok_docs_sample.json"), content_type="application/json"
    )
    httpserver.expect_oneshot_request(QUOTE).respond_with_data(
        fixture_bytes("finnhub", "error_401_invalid_api_key.json"),
        status=401,
        content_type="application/json",
    )
    await provider.fetch_bars(daily())
    with pytest.raises(AuthError) as caught:
        await provider.fetch_quotes(["AAPL"], "XNAS")

    assert "HTTP Request: GET" in caplog.text  # httpx did log the requests...
    assert API_KEY not in caplog.text  # ...without the key
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    for request, _ in httpserver.log:
        assert API_KEY not in request.url
        assert "token" not in request.args


def test_build_reads_the_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from market_data.policy.schema import ProviderPolicy

    monkeypatch.setenv("FINNHUB_API_KEY", API_KEY)
    p = finnhub.build("finnhub_eu", ProviderPolicy(kind="finnhub", base_url="http://127.0.0.1:9/api/v1"))
    assert p.name == "finnhub_eu"
    assert str(p._http._client.base_url).rstrip("/") == "http://127.0.0.1:9/api/v1"
    assert p._http._client.headers["X-Finnhub-Token"] == API_KEY
