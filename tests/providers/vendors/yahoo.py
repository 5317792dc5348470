"""Yahoo: the v8 chart endpoint serves bars and (from its `meta`) quotes; no key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.providers.base import BarRequest, Capabilities
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.providers.yahoo import YahooProvider
from market_data.records import Bar, Interval, Quote

from ..support import PLAIN_TEXT_200, ErrorCase, encode, fixture_bytes, fixture_json, http_date
from . import NOW, BarsCase, QuotesCase, Vendor

# The recorded request: AAPL 1m bars for 2024-10-02 (period1/period2 of the recording).
OCT2 = BarRequest(
    symbols=("AAPL",),
    exchange_mic="XNAS",
    interval=Interval.M1,
    start=datetime(2024, 10, 2, tzinfo=UTC),
    end=datetime(2024, 10, 3, tzinfo=UTC),
)
SATURDAY = BarRequest(
    symbols=("AAPL",),
    exchange_mic="XNAS",
    interval=Interval.M1,
    start=datetime(2025, 2, 1, tzinfo=UTC),
    end=datetime(2025, 2, 2, tzinfo=UTC),
)
CHART_OK = fixture_bytes("yahoo", "chart_v8_AAPL_1m_ok.json")
CHART_WEEKEND = fixture_bytes("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json")


def minute(hh: int, mm: int, o: float, h: float, lo: float, c: float, v: int) -> Bar:
    return Bar(
        symbol="AAPL",
        interval=Interval.M1,
        ts=datetime(2024, 10, 2, hh, mm, tzinfo=UTC),
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        provider="yahoo",
    )


BARS = [
    # 7 recorded points: 15:15Z is all-null (no trades) and 2024-10-03 20:00Z is Yahoo's
    # appended live point outside the requested day, so 5 bars remain; float32 noise is
    # rounded away (225.6999969482422 -> 225.7).
    BarsCase(
        "minute-bars-round-and-skip-null-and-out-of-range-points",
        CHART_OK,
        OCT2,
        [
            minute(13, 30, 225.89, 226.11, 225.42, 225.7, 1205461),
            minute(13, 31, 225.73, 226.0, 225.55, 225.94, 205420),
            minute(13, 32, 225.965, 226.0, 225.2, 225.26, 178660),
            minute(15, 14, 226.13, 226.14, 226.08, 226.13, 11712),
            minute(15, 16, 226.34, 226.388, 226.29, 226.38, 191527),
        ],
        {"interval": "1m", "period1": "1727827200", "period2": "1727913600", "includePrePost": "false"},
    ),
    # at 13:32:30Z the 13:32 minute is still running
    BarsCase(
        "bars-not-complete-at-now-are-dropped",
        CHART_OK,
        OCT2,
        [
            minute(13, 30, 225.89, 226.11, 225.42, 225.7, 1205461),
            minute(13, 31, 225.73, 226.0, 225.55, 225.94, 205420),
        ],
        {"interval": "1m"},
        exact_query=False,
        now=datetime(2024, 10, 2, 13, 32, 30, tzinfo=UTC),
    ),
    BarsCase(
        "weekend-answer-without-timestamps-is-an-empty-list",
        CHART_WEEKEND,
        SATURDAY,
        [],
        {"interval": "1m", "period1": "1738368000", "period2": "1738454400", "includePrePost": "false"},
    ),
]

QUOTES = [
    QuotesCase(
        "quote-from-the-meta-of-a-trading-day",
        CHART_OK,
        ["AAPL"],
        "XNAS",
        [Quote(symbol="AAPL", ts=datetime(2024, 10, 3, 20, 0, 1, tzinfo=UTC), provider="yahoo", last=225.67)],
        {"interval": "1d", "range": "1d"},
    ),
    QuotesCase(
        "quote-from-the-meta-of-a-weekend-answer",
        CHART_WEEKEND,
        ["AAPL"],
        "XNAS",
        [Quote(symbol="AAPL", ts=datetime(2025, 2, 19, 21, 0, 1, tzinfo=UTC), provider="yahoo", last=244.87)],
        {"interval": "1d", "range": "1d"},
    ),
]

no_price = fixture_json("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json")
del no_price["chart"]["result"][0]["meta"]["regularMarketPrice"]
short_close = fixture_json("yahoo", "chart_v8_AAPL_1m_ok.json")
short_close["chart"]["result"][0]["indicators"]["quote"][0]["close"].pop()
TOO_MANY = fixture_bytes("yahoo", "error_429_too_many_requests.txt")
NOT_FOUND = fixture_bytes("yahoo", "chart_v8_error_404_not_found.json")
# fmt: off
ERRORS = [
    # Yahoo has no recorded 401/403 body; the status alone decides.
    ErrorCase("401", 401, b"", AuthError, False),
    ErrorCase("403", 403, b"", AuthError, False),
    ErrorCase("429-plain-text-no-retry-after", 429, TOO_MANY, RateLimitedError, True,
              content_type="text/plain", message_part="Edge: Too Many Requests"),
    ErrorCase("429-retry-after-seconds", 429, TOO_MANY, RateLimitedError, True,
              headers={"Retry-After": "5"}, content_type="text/plain", retry_after=5.0),
    ErrorCase("429-retry-after-date", 429, TOO_MANY, RateLimitedError, True,
              headers={"Retry-After": http_date(NOW + timedelta(minutes=2))}, content_type="text/plain",
              retry_after=120.0),
    ErrorCase("503", 503, b"", ServerError, True),
    ErrorCase("404-not-found", 404, NOT_FOUND, RequestError, False,
              message_part="Not Found: No data found, symbol may be delisted"),
    # the recorded error body, but with 200: Yahoo's verdict still refuses the request
    ErrorCase("error-in-200", 200, NOT_FOUND, RequestError, False, message_part="No data found"),
    ErrorCase("malformed-json", 200, CHART_OK[:500], BadPayloadError, False),
    ErrorCase("plain-text-200", 200, PLAIN_TEXT_200, BadPayloadError, False, content_type="text/plain"),
    # a real body of another vendor: no `chart`
    ErrorCase("wrong-shape", 200, fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json"),
              BadPayloadError, False),
    ErrorCase("arrays-differ-in-length", 200, encode(short_close), BadPayloadError, False,
              message_part="differ in length"),
    ErrorCase("neither-result-nor-error", 200, encode({"chart": {"result": None, "error": None}}),
              BadPayloadError, False),
]
# fmt: on

VENDOR = Vendor(
    kind="yahoo",
    adapter=YahooProvider,
    credentials=None,
    env={},
    request_headers={"User-Agent": "Mozilla/5.0 (compatible; market-data/0.1)"},
    default_base_url="https://query2.finance.yahoo.com",
    default_calls_per_minute=30,
    capabilities=Capabilities(
        bar_intervals=frozenset(Interval),
        quotes=True,
        max_symbols_per_request=1,
        max_range={
            Interval.M1: timedelta(days=7),
            Interval.M5: timedelta(days=60),
            Interval.M15: timedelta(days=60),
            Interval.H1: timedelta(days=730),
        },
        corporate_actions=True,
    ),
    base_path="",
    bars_path="/v8/finance/chart/AAPL",
    quotes_path="/v8/finance/chart/AAPL",
    bars=BARS,
    quotes=QUOTES,
    quote_without_data=QuotesCase("no-regular-market-price", encode(no_price), ["AAPL"], "XNAS", [], {}),
    error_request=OCT2,
    errors=ERRORS,
    quote_error=next(case for case in ERRORS if case.id == "404-not-found"),
)
