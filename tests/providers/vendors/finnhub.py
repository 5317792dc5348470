"""Finnhub: `/stock/candle` (one symbol, parallel arrays) and `/quote`, key in a header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.providers.base import BarRequest, Capabilities
from market_data.providers.credentials import Credentials
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.providers.finnhub import STOCK_EXCHANGES, FinnhubProvider
from market_data.records import Bar, Interval, Quote

from ..support import PLAIN_TEXT_200, ErrorCase, encode, fixture_bytes, fixture_json, http_date
from . import NOW, BarsCase, QuotesCase, Vendor

API_KEY = "fh-test-key-5f3a9c0d"


def daily(symbol: str = "AAPL", start: str = "2019-09-24", end: str = "2019-09-27") -> BarRequest:
    return BarRequest(
        symbols=(symbol,),
        exchange_mic="XNAS",
        interval=Interval.D1,
        start=datetime.fromisoformat(start).replace(tzinfo=UTC),
        end=datetime.fromisoformat(end).replace(tzinfo=UTC),
    )


def bar(interval: Interval, ts: datetime, o: float, h: float, lo: float, c: float, v: int) -> Bar:
    return Bar(
        symbol="AAPL", interval=interval, ts=ts, open=o, high=h, low=lo, close=c, volume=v, provider="finnhub"
    )


def epoch(when: datetime) -> str:
    return str(int(when.timestamp()))


CANDLES_OK = fixture_bytes("finnhub", "stock_candle_ok_docs_sample.json")
HOUR_START = datetime(2020, 7, 2, 18, 30, tzinfo=UTC)
HOUR_END = datetime(2020, 7, 2, 20, 0, tzinfo=UTC)

BARS = [
    # Finnhub stamps a day at New York midnight (04:00Z); ours is the session date at 00:00Z,
    # and the request asks a day of margin each side (a vendor's stamp may precede the date in UTC).
    BarsCase(
        "daily-candles-are-session-dated",
        CANDLES_OK,
        daily(),
        [
            bar(Interval.D1, datetime(2019, 9, 24, tzinfo=UTC), 221.03, 222.49, 217.19, 217.68, 33463820),
            bar(Interval.D1, datetime(2019, 9, 25, tzinfo=UTC), 218.55, 221.5, 217.1402, 221.03, 24018876),
            bar(Interval.D1, datetime(2019, 9, 26, tzinfo=UTC), 220.0, 220.94, 218.83, 219.89, 20730608),
        ],
        {
            "symbol": "AAPL",
            "resolution": "D",
            "from": epoch(datetime(2019, 9, 23, tzinfo=UTC)),
            "to": epoch(datetime(2019, 9, 28, tzinfo=UTC)),
        },
    ),
    # 2019-09-26 15:00Z: that session is still open, so its daily bar is not final yet; the
    # 24th is before the range
    BarsCase(
        "bars-outside-the-range-or-not-complete-are-dropped",
        CANDLES_OK,
        daily(start="2019-09-25", end="2019-09-30"),
        [bar(Interval.D1, datetime(2019, 9, 25, tzinfo=UTC), 218.55, 221.5, 217.1402, 221.03, 24018876)],
        {"resolution": "D"},
        exact_query=False,
        now=datetime(2019, 9, 26, 15, 0, tzinfo=UTC),
    ),
    # 1h comes from 30-minute candles; 18:30Z and 19:30Z are session-aligned hours (open
    # 13:30Z), so each passes unchanged. The last hour starting before `end` needs candles up
    # to an hour after it.
    BarsCase(
        "hourly-bars-come-from-30-minute-candles",
        fixture_bytes("finnhub", "stock_candle_60_issue309.json"),
        BarRequest(
            symbols=("AAPL",), exchange_mic="XNAS", interval=Interval.H1, start=HOUR_START, end=HOUR_END
        ),
        [
            bar(Interval.H1, HOUR_START, 366.95, 367.31, 366.21, 366.5698, 2113793),
            bar(Interval.H1, datetime(2020, 7, 2, 19, 30, tzinfo=UTC), 366.59, 367.0, 365.93, 366.19, 656192),
        ],
        {"resolution": "30", "to": epoch(HOUR_END + timedelta(hours=1))},
        exact_query=False,
    ),
    BarsCase(
        "no-data-is-an-empty-list",
        fixture_bytes("finnhub", "stock_candle_no_data.json"),
        daily(),
        [],
        {"symbol": "AAPL", "resolution": "D"},
        exact_query=False,
    ),
]

QUOTES = [
    QuotesCase(
        "docs-sample-without-d-dp",
        fixture_bytes("finnhub", "quote_docs_sample.json"),
        ["AAPL"],
        "XNAS",
        [Quote(symbol="AAPL", ts=datetime(2020, 2, 25, 14, 30, tzinfo=UTC), provider="finnhub", last=261.74)],
        {"symbol": "AAPL"},
    ),
    QuotesCase(
        "recorded-2020",
        fixture_bytes("finnhub", "quote_recorded_2020.json"),
        ["AAPL"],
        "XNAS",
        [
            Quote(
                symbol="AAPL", ts=datetime(2020, 3, 19, 13, 30, tzinfo=UTC), provider="finnhub", last=250.195
            )
        ],
        {"symbol": "AAPL"},
    ),
]

candle_ok = fixture_json("finnhub", "stock_candle_ok_docs_sample.json")
LIMIT_REACHED = fixture_bytes("finnhub", "error_429_api_limit_reached.json")
# fmt: off
ERRORS = [
    ErrorCase("401", 401, fixture_bytes("finnhub", "error_401_invalid_api_key.json"), AuthError, False,
              message_part="Invalid API key."),
    ErrorCase("403", 403, fixture_bytes("finnhub", "error_403_no_access.json"), AuthError, False,
              message_part="You don't have access to this resource."),
    ErrorCase("429-retry-after-seconds", 429, LIMIT_REACHED, RateLimitedError, True,
              headers={"Retry-After": "17"}, message_part="API limit reached", retry_after=17.0),
    ErrorCase("429-retry-after-date", 429, LIMIT_REACHED, RateLimitedError, True,
              headers={"Retry-After": http_date(NOW + timedelta(seconds=90))}, retry_after=90.0),
    ErrorCase("429-no-retry-after-plain-text", 429, fixture_bytes("finnhub", "error_429_no_token.txt"),
              RateLimitedError, True, content_type="text/plain",
              message_part="API limit reached. Please sign up"),
    ErrorCase("500", 500, b"", ServerError, True),
    ErrorCase("502-html", 502, b"<html>Bad Gateway</html>", ServerError, True, content_type="text/html"),
    # Finnhub's error shape, as in the recorded 401/403 bodies (no 4xx of this kind was recorded)
    ErrorCase("422", 422, b'{"error": "Wrong resolution"}', RequestError, False,
              message_part="Wrong resolution"),
    ErrorCase("malformed-json", 200, CANDLES_OK[:60], BadPayloadError, False),
    ErrorCase("plain-text-200", 200, PLAIN_TEXT_200, BadPayloadError, False, content_type="text/plain",
              message_part="You have run over your 500 symbol look up"),
    # a real Finnhub body of the wrong endpoint: a quote has no `s` or arrays
    ErrorCase("wrong-shape", 200, fixture_bytes("finnhub", "quote_docs_sample.json"), BadPayloadError, False),
    ErrorCase("arrays-differ-in-length", 200, encode({**candle_ok, "c": candle_ok["c"][:2]}),
              BadPayloadError, False, message_part="differ in length"),
    ErrorCase("unknown-status", 200, encode({**candle_ok, "s": "error"}), BadPayloadError, False),
    ErrorCase("redirect", 302, b"", BadPayloadError, False, headers={"Location": "https://example.com/"}),
]
# fmt: on

VENDOR = Vendor(
    kind="finnhub",
    adapter=FinnhubProvider,
    credentials=Credentials(key=API_KEY),
    env={"FINNHUB_API_KEY": API_KEY},
    request_headers={"X-Finnhub-Token": API_KEY},
    default_base_url="https://finnhub.io/api/v1",
    default_calls_per_minute=60,
    capabilities=Capabilities(
        bar_intervals=frozenset(Interval),
        quotes=True,
        max_symbols_per_request=1,
        max_range={iv: timedelta(days=30) for iv in (Interval.M1, Interval.M5, Interval.M15, Interval.H1)},
        exchanges=STOCK_EXCHANGES,  # stocks only: never routed a crypto pair (test_crypto.py)
        corporate_actions=True,
    ),
    base_path="/api/v1",
    bars_path="/api/v1/stock/candle",
    quotes_path="/api/v1/quote",
    bars=BARS,
    quotes=QUOTES,
    quote_without_data=QuotesCase(
        "all-zero-quote", fixture_bytes("finnhub", "quote_all_zero_issue332.json"), ["^DJI"], "XNYS", [], {}
    ),
    error_request=daily(),
    errors=ERRORS,
    quote_error=next(case for case in ERRORS if case.id == "401"),
    secrets=[API_KEY],
)
