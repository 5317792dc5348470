"""Yahoo chart adapter against a local server answering with recorded chart bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from market_data.policy.schema import ProviderPolicy
from market_data.providers import yahoo
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
from market_data.providers.yahoo import YahooProvider
from market_data.records import Bar, Interval, Quote

from .support import PLAIN_TEXT_200, ErrorCase, encode, fixture_bytes, fixture_json, http_date

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CHART_AAPL = "/v8/finance/chart/AAPL"
# The recorded request: AAPL 1m bars for 2024-10-02 (period1/period2 of the recording).
OCT2 = BarRequest(
    symbols=("AAPL",),
    exchange_mic="XNAS",
    interval=Interval.M1,
    start=datetime(2024, 10, 2, tzinfo=UTC),
    end=datetime(2024, 10, 3, tzinfo=UTC),
)


@pytest.fixture
async def provider(httpserver: HTTPServer) -> AsyncIterator[YahooProvider]:
    p = YahooProvider(base_url=httpserver.url_for("/"), clock=lambda: NOW)
    yield p
    await p.aclose()


def ok_chart() -> bytes:
    return fixture_bytes("yahoo", "chart_v8_AAPL_1m_ok.json")


async def test_adapter_satisfies_the_provider_protocol() -> None:
    p = YahooProvider()
    await p.aclose()
    assert isinstance(p, Provider)
    assert p.name == "yahoo"
    assert p.default_calls_per_minute == 30
    assert p.capabilities.max_symbols_per_request == 1
    assert p.capabilities.bar_intervals == frozenset(Interval)
    assert p.capabilities.max_range[Interval.M1] == timedelta(days=7)
    assert Interval.D1 not in p.capabilities.max_range
    assert str(p._http._client.base_url).rstrip("/") == "https://query2.finance.yahoo.com"


async def test_minute_bars_decode_round_and_skip_null_and_out_of_range_bars(
    provider: YahooProvider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_data(ok_chart(), content_type="application/json")

    bars = await provider.fetch_bars(OCT2)

    def bar(ts: datetime, o: float, h: float, lo: float, c: float, v: int) -> Bar:
        return Bar(symbol="AAPL", interval=Interval.M1, ts=ts, open=o, high=h, low=lo, close=c, volume=v,
                   provider="yahoo")  # fmt: skip

    # 7 recorded points: 15:15Z is all-null (no trades) and 2024-10-03 20:00Z is Yahoo's
    # appended live point outside the requested day, so 5 bars remain; float32 noise is
    # rounded away (225.6999969482422 -> 225.7).
    assert bars == [
        bar(datetime(2024, 10, 2, 13, 30, tzinfo=UTC), 225.89, 226.11, 225.42, 225.7, 1205461),
        bar(datetime(2024, 10, 2, 13, 31, tzinfo=UTC), 225.73, 226.0, 225.55, 225.94, 205420),
        bar(datetime(2024, 10, 2, 13, 32, tzinfo=UTC), 225.965, 226.0, 225.2, 225.26, 178660),
        bar(datetime(2024, 10, 2, 15, 14, tzinfo=UTC), 226.13, 226.14, 226.08, 226.13, 11712),
        bar(datetime(2024, 10, 2, 15, 16, tzinfo=UTC), 226.34, 226.388, 226.29, 226.38, 191527),
    ]
    request, _ = httpserver.log[0]
    assert request.args.to_dict() == {
        "interval": "1m",
        "period1": "1727827200",
        "period2": "1727913600",
        "includePrePost": "false",
    }
    assert request.headers["User-Agent"].startswith("Mozilla/5.0")


async def test_bars_not_complete_at_now_are_dropped(httpserver: HTTPServer) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_data(ok_chart(), content_type="application/json")
    # at 13:32:30Z the 13:32 minute is still running
    p = YahooProvider(
        base_url=httpserver.url_for("/"), clock=lambda: datetime(2024, 10, 2, 13, 32, 30, tzinfo=UTC)
    )
    try:
        bars = await p.fetch_bars(OCT2)
    finally:
        await p.aclose()
    assert [b.ts.minute for b in bars] == [30, 31]


async def test_weekend_answer_without_timestamps_is_an_empty_list(
    provider: YahooProvider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_data(
        fixture_bytes("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json"), content_type="application/json"
    )
    saturday = BarRequest(
        symbols=("AAPL",),
        exchange_mic="XNAS",
        interval=Interval.M1,
        start=datetime(2025, 2, 1, tzinfo=UTC),
        end=datetime(2025, 2, 2, tzinfo=UTC),
    )
    assert await provider.fetch_bars(saturday) == []


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("chart_v8_AAPL_1m_ok.json", Quote(symbol="AAPL", ts=datetime(2024, 10, 3, 20, 0, 1, tzinfo=UTC),
                                           provider="yahoo", last=225.67)),
        ("chart_v8_AAPL_1m_no_bars_weekend.json", Quote(symbol="AAPL",
                                                        ts=datetime(2025, 2, 19, 21, 0, 1, tzinfo=UTC),
                                                        provider="yahoo", last=244.87)),
    ],
)  # fmt: skip
async def test_quote_comes_from_the_chart_meta(
    provider: YahooProvider, httpserver: HTTPServer, fixture: str, expected: Quote
) -> None:
    httpserver.expect_request(CHART_AAPL, query_string={"interval": "1d", "range": "1d"}).respond_with_data(
        fixture_bytes("yahoo", fixture), content_type="application/json"
    )
    assert await provider.fetch_quotes(["AAPL"], "XNAS") == [expected]


async def test_quote_without_a_market_price_is_empty_data(
    provider: YahooProvider, httpserver: HTTPServer
) -> None:
    chart = fixture_json("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json")
    del chart["chart"]["result"][0]["meta"]["regularMarketPrice"]
    httpserver.expect_request(CHART_AAPL).respond_with_data(encode(chart), content_type="application/json")
    with pytest.raises(EmptyDataError) as caught:
        await provider.fetch_quotes(["AAPL"], "XNAS")
    assert not should_retry(caught.value)


async def test_symbols_with_suffixes_go_into_the_path(
    provider: YahooProvider, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v8/finance/chart/VOD.L").respond_with_data(
        fixture_bytes("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json"), content_type="application/json"
    )
    quotes = await provider.fetch_quotes(["VOD.L"], "XLON")
    assert quotes[0].symbol == "VOD.L"


ok = fixture_json("yahoo", "chart_v8_AAPL_1m_ok.json")
short_close = fixture_json("yahoo", "chart_v8_AAPL_1m_ok.json")
short_close["chart"]["result"][0]["indicators"]["quote"][0]["close"].pop()
ERRORS = [
    # Yahoo has no recorded 401/403 body; the status alone decides.
    ErrorCase("401", 401, b"", AuthError, False),
    ErrorCase("403", 403, b"", AuthError, False),
    ErrorCase(
        "429-plain-text-no-retry-after",
        429,
        fixture_bytes("yahoo", "error_429_too_many_requests.txt"),
        RateLimitedError,
        True,
        content_type="text/plain",
        message_part="Edge: Too Many Requests",
    ),
    ErrorCase(
        "429-retry-after-seconds",
        429,
        fixture_bytes("yahoo", "error_429_too_many_requests.txt"),
        RateLimitedError,
        True,
        headers={"Retry-After": "5"},
        content_type="text/plain",
    ),
    ErrorCase(
        "429-retry-after-date",
        429,
        fixture_bytes("yahoo", "error_429_too_many_requests.txt"),
        RateLimitedError,
        True,
        headers={"Retry-After": http_date(NOW + timedelta(minutes=2))},
        content_type="text/plain",
    ),
    ErrorCase("503", 503, b"", ServerError, True),
    ErrorCase(
        "404-not-found",
        404,
        fixture_bytes("yahoo", "chart_v8_error_404_not_found.json"),
        RequestError,
        False,
        message_part="Not Found: No data found, symbol may be delisted",
    ),
    # the recorded error body, but with 200: Yahoo's verdict still refuses the request
    ErrorCase(
        "error-in-200",
        200,
        fixture_bytes("yahoo", "chart_v8_error_404_not_found.json"),
        RequestError,
        False,
        message_part="No data found",
    ),
    ErrorCase("malformed-json", 200, ok_chart()[:500], BadPayloadError, False),
    ErrorCase("plain-text-200", 200, PLAIN_TEXT_200, BadPayloadError, False, content_type="text/plain"),
    # a real body of another vendor: no `chart`
    ErrorCase(
        "wrong-shape",
        200,
        fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json"),
        BadPayloadError,
        False,
    ),
    ErrorCase(
        "arrays-differ-in-length",
        200,
        encode(short_close),
        BadPayloadError,
        False,
        message_part="differ in length",
    ),
    ErrorCase(
        "neither-result-nor-error",
        200,
        encode({"chart": {"result": None, "error": None}}),
        BadPayloadError,
        False,
    ),
]
RETRY_AFTER = {"429-retry-after-seconds": 5.0, "429-retry-after-date": 120.0}


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
async def test_error_answers_map_onto_the_error_tree(
    provider: YahooProvider, httpserver: HTTPServer, case: ErrorCase
) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_data(
        case.body, status=case.status, headers=case.headers, content_type=case.content_type
    )
    with pytest.raises(ProviderError) as caught:
        await provider.fetch_bars(OCT2)
    exc = caught.value
    assert type(exc) is case.error
    assert exc.provider == "yahoo"
    assert should_retry(exc) is case.retryable
    assert case.message_part in exc.message
    if case.status != 200:
        assert exc.status == case.status
    if isinstance(exc, RateLimitedError):
        assert exc.retry_after == RETRY_AFTER.get(case.id)


async def test_no_data_for_the_range_is_an_empty_answer_not_an_error(
    provider: YahooProvider, httpserver: HTTPServer
) -> None:
    """400 "Data doesn't exist for startDate" (a range before the symbol traded) means no bars."""
    httpserver.expect_request(CHART_AAPL).respond_with_data(
        fixture_bytes("yahoo", "chart_v8_error_400_bad_request.json"),
        status=400,
        content_type="application/json",
    )
    assert await provider.fetch_bars(OCT2) == []


async def test_other_400s_stay_request_errors(provider: YahooProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_json(
        {
            "chart": {
                "result": None,
                "error": {"code": "Bad Request", "description": "Invalid input - interval=7m"},
            }
        },
        status=400,
    )
    with pytest.raises(RequestError, match="Invalid input"):
        await provider.fetch_bars(OCT2)


async def test_quote_errors_map_the_same_way(provider: YahooProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(CHART_AAPL).respond_with_data(
        fixture_bytes("yahoo", "chart_v8_error_404_not_found.json"),
        status=404,
        content_type="application/json",
    )
    with pytest.raises(RequestError):
        await provider.fetch_quotes(["AAPL"], "XNAS")


async def test_timeout_is_a_server_error(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response(ok_chart())

    httpserver.expect_request(CHART_AAPL).respond_with_handler(slow)
    p = YahooProvider(base_url=httpserver.url_for("/"), timeout=0.1, clock=lambda: NOW)
    try:
        with pytest.raises(ServerError) as caught:
            await p.fetch_bars(OCT2)
    finally:
        await p.aclose()
    assert should_retry(caught.value)


async def test_connection_refused_is_a_server_error() -> None:
    p = YahooProvider(base_url="http://127.0.0.1:1", clock=lambda: NOW)
    try:
        with pytest.raises(ServerError):
            await p.fetch_bars(OCT2)
    finally:
        await p.aclose()


async def test_build_needs_no_credentials_and_takes_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FINNHUB_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    p = yahoo.build("yahoo_backup", ProviderPolicy(kind="yahoo", base_url="http://127.0.0.1:9"))
    await p.aclose()
    assert p.name == "yahoo_backup"
    assert str(p._http._client.base_url).rstrip("/") == "http://127.0.0.1:9"
