"""Alpaca market data adapter against a local server answering with recorded Alpaca bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from market_data.policy.schema import ProviderPolicy
from market_data.providers import alpaca
from market_data.providers.alpaca import AlpacaProvider
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

KEY_ID = "PKTESTKEYID0042"
SECRET = "alpaca-test-secret-9e1b7"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BARS = "/v2/stocks/bars"
SNAPSHOTS = "/v2/stocks/snapshots"
PAGE_TOKEN = "QUFQTHxEfDIwMjItMDItMDJUMDU6MDA6MDAuMDAwMDAwMDAwWg=="


def daily(*symbols: str, start: str, end: str, mic: str = "XNAS") -> BarRequest:
    return BarRequest(
        symbols=symbols,
        exchange_mic=mic,
        interval=Interval.D1,
        start=datetime.fromisoformat(start).replace(tzinfo=UTC),
        end=datetime.fromisoformat(end).replace(tzinfo=UTC),
    )


MAR9 = daily("AAPL", "TSLA", start="2022-03-09", end="2022-03-10")


def make(httpserver: HTTPServer, **kwargs: Any) -> AlpacaProvider:
    return AlpacaProvider(KEY_ID, SECRET, base_url=httpserver.url_for("/"), clock=lambda: NOW, **kwargs)


@pytest.fixture
async def provider(httpserver: HTTPServer) -> AsyncIterator[AlpacaProvider]:
    p = make(httpserver)
    yield p
    await p.aclose()


def json_response(body: bytes, status: int = 200) -> dict[str, Any]:
    return {"response_data": body, "status": status, "content_type": "application/json"}


async def test_adapter_satisfies_the_provider_protocol() -> None:
    p = AlpacaProvider(KEY_ID, SECRET)
    await p.aclose()
    assert isinstance(p, Provider)
    assert p.name == "alpaca"
    assert p.default_calls_per_minute == 200
    assert p.capabilities.max_symbols_per_request == 100
    assert p.capabilities.bar_intervals == frozenset(Interval)
    assert p.capabilities.max_range == {}
    assert str(p._http._client.base_url).rstrip("/") == "https://data.alpaca.markets"


async def test_multi_symbol_daily_bars(provider: AlpacaProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(BARS).respond_with_data(
        **json_response(fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json"))
    )

    bars = await provider.fetch_bars(MAR9)

    # Alpaca stamps a day at New York midnight (05:00Z in winter); ours is 00:00Z that date.
    mar9 = datetime(2022, 3, 9, tzinfo=UTC)
    assert bars == [
        Bar(symbol="AAPL", interval=Interval.D1, ts=mar9, open=161.51, high=163.41, low=159.41, close=162.95,
            volume=88496480, vwap=161.942117, trade_count=700291, provider="alpaca"),
        Bar(symbol="TSLA", interval=Interval.D1, ts=mar9, open=839.0, high=860.56, low=832.01, close=858.97,
            volume=19227323, vwap=850.616587, trade_count=528531, provider="alpaca"),
    ]  # fmt: skip
    request, _ = httpserver.log[0]
    assert request.args.to_dict() == {
        "symbols": "AAPL,TSLA",
        "timeframe": "1Day",
        "start": "2022-03-08T00:00:00Z",
        "end": "2022-03-11T00:00:00Z",
        "limit": "10000",
    }
    assert request.headers["APCA-API-KEY-ID"] == KEY_ID
    assert request.headers["APCA-API-SECRET-KEY"] == SECRET


async def test_pagination_follows_tokens_to_a_partial_last_page(httpserver: HTTPServer) -> None:
    first_page = fixture_bytes("alpaca", "stocks_bars_AAPL_with_next_page_token.json")  # full: 2 bars
    last_page = fixture_json("alpaca", "stocks_bars_multi_AAPL_TSLA.json")
    del last_page["bars"]["TSLA"]  # partial: 1 bar, AAPL continued from page 1
    query = {
        "symbols": "AAPL,TSLA",
        "timeframe": "1Day",
        "start": "2022-01-31T00:00:00Z",
        "end": "2022-03-11T00:00:00Z",
        "limit": "2",
    }
    httpserver.expect_ordered_request(BARS, query_string=query).respond_with_data(**json_response(first_page))
    httpserver.expect_ordered_request(
        BARS, query_string={**query, "page_token": PAGE_TOKEN}
    ).respond_with_data(**json_response(encode(last_page)))
    p = make(httpserver, page_limit=2)
    try:
        bars = await p.fetch_bars(daily("AAPL", "TSLA", start="2022-02-01", end="2022-03-10"))
    finally:
        await p.aclose()

    httpserver.check_assertions()
    assert len(httpserver.log) == 2
    assert [(b.symbol, b.ts, b.close) for b in bars] == [
        ("AAPL", datetime(2022, 2, 1, tzinfo=UTC), 174.61),
        ("AAPL", datetime(2022, 2, 2, tzinfo=UTC), 175.84),
        ("AAPL", datetime(2022, 3, 9, tzinfo=UTC), 162.95),
    ]
    assert bars[0].open == 174.0 and bars[0].volume == 85998033 and bars[0].trade_count == 732412


async def test_a_repeating_page_token_is_a_bad_payload(httpserver: HTTPServer) -> None:
    # the recorded page always points at its own successor token: a loop if served forever
    httpserver.expect_request(BARS).respond_with_data(
        **json_response(fixture_bytes("alpaca", "stocks_bars_AAPL_with_next_page_token.json"))
    )
    p = make(httpserver)
    try:
        with pytest.raises(BadPayloadError, match="repeats"):
            await p.fetch_bars(daily("AAPL", start="2022-02-01", end="2022-03-10"))
    finally:
        await p.aclose()
    assert len(httpserver.log) == 2


async def test_empty_bars_are_an_empty_list(provider: AlpacaProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(BARS).respond_with_data(
        **json_response(fixture_bytes("alpaca", "stocks_bars_empty.json"))
    )
    assert await provider.fetch_bars(MAR9) == []


async def test_hourly_bars_are_rolled_up_into_session_aligned_hours(
    provider: AlpacaProvider, httpserver: HTTPServer
) -> None:
    # The recorded 15Min AMZN bars (16:00, 16:15, 16:30Z on 2021-10-15) stand in for the
    # 30Min answer: the roll-up does not depend on the finer grid's step.
    amzn = fixture_json("alpaca", "stock_symbol_bars_AMZN_15Min.json")
    page = {"bars": {"AMZN": amzn["bars"]}, "next_page_token": None}
    httpserver.expect_request(BARS).respond_with_data(**json_response(encode(page)))
    start = datetime(2021, 10, 15, 15, 30, tzinfo=UTC)
    end = datetime(2021, 10, 15, 17, 30, tzinfo=UTC)

    bars = await provider.fetch_bars(
        BarRequest(symbols=("AMZN",), exchange_mic="XNAS", interval=Interval.H1, start=start, end=end)
    )

    # Hours start at the 13:30Z open: 15:30-16:30Z holds the 16:00 and 16:15 bars,
    # 16:30-17:30Z only the 16:30 bar (which is passed on as recorded).
    assert bars == [
        Bar(symbol="AMZN", interval=Interval.H1, ts=start, open=3378.14, high=3383.24, low=3376.3001,
            close=3377.82, volume=327539, vwap=3379.25274, trade_count=10979, provider="alpaca"),
        Bar(symbol="AMZN", interval=Interval.H1, ts=datetime(2021, 10, 15, 16, 30, tzinfo=UTC), open=3377.982,
            high=3380.86, low=3377.0, close=3380.0, volume=58531, vwap=3379.100605, trade_count=3679,
            provider="alpaca"),
    ]  # fmt: skip
    sent, _ = httpserver.log[0]
    assert sent.args["timeframe"] == "30Min"
    assert sent.args["end"] == "2021-10-15T18:30:00Z"


async def test_quotes_come_from_snapshots(provider: AlpacaProvider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(SNAPSHOTS, query_string={"symbols": "AAPL,MSFT"}).respond_with_data(
        **json_response(fixture_bytes("alpaca", "stocks_snapshots_AAPL.json"))
    )

    quotes = await provider.fetch_quotes(["AAPL", "MSFT"], "XNAS")

    # MSFT is absent from the answer: only AAPL comes back; ts is the later of trade and quote
    assert quotes == [
        Quote(
            symbol="AAPL",
            ts=datetime(2022, 3, 18, 14, 33, 58, 547942, tzinfo=UTC),
            provider="alpaca",
            last=161.1998,
            bid=161.19,
            ask=161.2,
            bid_size=5,
            ask_size=2,
        )
    ]


async def test_no_snapshot_at_all_is_empty_data(provider: AlpacaProvider, httpserver: HTTPServer) -> None:
    # `{}` is alpaca-py's recorded answer for a symbol without data (test_get_snapshot_multi_empty_response)
    httpserver.expect_request(SNAPSHOTS).respond_with_data(**json_response(b"{}"))
    with pytest.raises(EmptyDataError) as caught:
        await provider.fetch_quotes(["ZZZZ"], "XNYS")
    assert not should_retry(caught.value)


async def test_foreign_exchanges_and_oversized_batches_are_refused_without_a_call(
    provider: AlpacaProvider, httpserver: HTTPServer
) -> None:
    with pytest.raises(RequestError, match="US exchanges"):
        await provider.fetch_bars(daily("VOD.L", start="2024-01-02", end="2024-01-03", mic="XLON"))
    with pytest.raises(RequestError, match="US exchanges"):
        await provider.fetch_quotes(["7203.T"], "XTKS")
    with pytest.raises(RequestError, match="1 to 100 symbols"):
        await provider.fetch_bars(daily(*[f"S{i}" for i in range(101)], start="2024-01-02", end="2024-01-03"))
    assert httpserver.log == []


ERRORS = [
    ErrorCase(
        "401",
        401,
        fixture_bytes("alpaca", "error_401_unauthorized.json"),
        AuthError,
        False,
        message_part="unauthorized",
    ),
    ErrorCase(
        "403-forbidden",
        403,
        fixture_bytes("alpaca", "error_403_forbidden.json"),
        AuthError,
        False,
        message_part="forbidden",
    ),
    ErrorCase(
        "403-recent-sip",
        403,
        fixture_bytes("alpaca", "error_403_recent_sip.json"),
        AuthError,
        False,
        message_part="subscription does not permit querying recent SIP data",
    ),
    # no market-data 429 body was ever recorded; the status and header decide
    ErrorCase("429-no-retry-after", 429, b"", RateLimitedError, True),
    ErrorCase("429-retry-after-seconds", 429, b"", RateLimitedError, True, headers={"Retry-After": "3"}),
    ErrorCase(
        "429-retry-after-date",
        429,
        b"",
        RateLimitedError,
        True,
        headers={"Retry-After": http_date(NOW + timedelta(seconds=45))},
    ),
    ErrorCase("500", 500, b"", ServerError, True),
    ErrorCase("504", 504, b"upstream timed out", ServerError, True, content_type="text/plain"),
    ErrorCase(
        "422-legacy",
        422,
        fixture_bytes("alpaca", "error_422_code_message_legacy.json"),
        RequestError,
        False,
        message_part="your subscription does not permit querying data from the past 15 minutes",
    ),
    ErrorCase(
        "400-unexpected-parameter",
        400,
        fixture_bytes("alpaca", "error_unexpected_query_parameter.json"),
        RequestError,
        False,
        message_part="unexpected query parameter(s): limit",
    ),
    ErrorCase(
        "malformed-json",
        200,
        fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json")[:80],
        BadPayloadError,
        False,
    ),
    ErrorCase("plain-text-200", 200, PLAIN_TEXT_200, BadPayloadError, False, content_type="text/plain"),
    # a real Alpaca body of another endpoint: snapshots have no `bars`
    ErrorCase(
        "wrong-shape", 200, fixture_bytes("alpaca", "stocks_snapshots_AAPL.json"), BadPayloadError, False
    ),
    ErrorCase(
        "single-symbol-shape",
        200,
        fixture_bytes("alpaca", "stock_symbol_bars_AMZN_15Min.json"),
        BadPayloadError,
        False,
    ),
]
RETRY_AFTER = {"429-retry-after-seconds": 3.0, "429-retry-after-date": 45.0}


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
async def test_error_answers_map_onto_the_error_tree(
    provider: AlpacaProvider, httpserver: HTTPServer, case: ErrorCase
) -> None:
    httpserver.expect_request(BARS).respond_with_data(
        case.body, status=case.status, headers=case.headers, content_type=case.content_type
    )
    with pytest.raises(ProviderError) as caught:
        await provider.fetch_bars(MAR9)
    exc = caught.value
    assert type(exc) is case.error
    assert exc.provider == "alpaca"
    assert should_retry(exc) is case.retryable
    assert case.message_part in exc.message
    if case.status != 200:
        assert exc.status == case.status
    if isinstance(exc, RateLimitedError):
        assert exc.retry_after == RETRY_AFTER.get(case.id)


async def test_an_error_on_a_later_page_fails_the_whole_call(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request(BARS).respond_with_data(
        **json_response(fixture_bytes("alpaca", "stocks_bars_AAPL_with_next_page_token.json"))
    )
    httpserver.expect_ordered_request(BARS).respond_with_data(b"", status=429, headers={"Retry-After": "2"})
    p = make(httpserver)
    try:
        with pytest.raises(RateLimitedError) as caught:
            await p.fetch_bars(daily("AAPL", start="2022-02-01", end="2022-03-10"))
    finally:
        await p.aclose()
    assert caught.value.retry_after == 2.0


async def test_timeout_is_a_server_error(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response(fixture_bytes("alpaca", "stocks_bars_empty.json"))

    httpserver.expect_request(BARS).respond_with_handler(slow)
    p = make(httpserver, timeout=0.1)
    try:
        with pytest.raises(ServerError) as caught:
            await p.fetch_bars(MAR9)
    finally:
        await p.aclose()
    assert should_retry(caught.value)


async def test_connection_refused_is_a_server_error() -> None:
    p = AlpacaProvider(KEY_ID, SECRET, base_url="http://127.0.0.1:1", clock=lambda: NOW)
    try:
        with pytest.raises(ServerError):
            await p.fetch_quotes(["AAPL"], "XNAS")
    finally:
        await p.aclose()


async def test_keys_never_reach_urls_logs_or_errors(
    provider: AlpacaProvider,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture_http_logs(caplog, monkeypatch)
    httpserver.expect_request(BARS).respond_with_data(
        **json_response(fixture_bytes("alpaca", "error_403_forbidden.json"), status=403)
    )
    with pytest.raises(AuthError) as caught:
        await provider.fetch_bars(MAR9)
    assert "HTTP Request: GET" in caplog.text
    for secret in (KEY_ID, SECRET):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
        assert secret not in httpserver.log[0][0].url


async def test_build_reads_the_key_pair_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", SECRET)
    p = alpaca.build("alpaca", ProviderPolicy(kind="alpaca", base_url="http://127.0.0.1:9"))
    await p.aclose()
    assert str(p._http._client.base_url).rstrip("/") == "http://127.0.0.1:9"
    assert p._http._client.headers["APCA-API-KEY-ID"] == KEY_ID
    assert p._http._client.headers["APCA-API-SECRET-KEY"] == SECRET
