"""Alpaca: multi-symbol `/v2/stocks/bars` (paginated) and `/v2/stocks/snapshots`, key pair in headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_data.providers.alpaca import AlpacaProvider
from market_data.providers.base import BarRequest, Capabilities
from market_data.providers.credentials import Credentials
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.records import Bar, Interval, Quote

from ..support import PLAIN_TEXT_200, ErrorCase, encode, fixture_bytes, fixture_json, http_date
from . import NOW, BarsCase, QuotesCase, Vendor

KEY_ID = "PKTESTKEYID0042"
SECRET = "alpaca-test-secret-9e1b7"


def daily(*symbols: str, start: str, end: str, mic: str = "XNAS") -> BarRequest:
    return BarRequest(
        symbols=symbols,
        exchange_mic=mic,
        interval=Interval.D1,
        start=datetime.fromisoformat(start).replace(tzinfo=UTC),
        end=datetime.fromisoformat(end).replace(tzinfo=UTC),
    )


MAR9 = daily("AAPL", "TSLA", start="2022-03-09", end="2022-03-10")
MAR9_DAY = datetime(2022, 3, 9, tzinfo=UTC)
HOUR_START = datetime(2021, 10, 15, 15, 30, tzinfo=UTC)


def bar(
    symbol: str,
    interval: Interval,
    ts: datetime,
    ohlc: tuple[float, float, float, float],
    volume: int,
    vwap: float,
    trade_count: int,
) -> Bar:
    o, h, lo, c = ohlc
    return Bar(symbol=symbol, interval=interval, ts=ts, open=o, high=h, low=lo, close=c, volume=volume,
               vwap=vwap, trade_count=trade_count, provider="alpaca")  # fmt: skip


# The recorded 15Min AMZN bars (16:00, 16:15, 16:30Z on 2021-10-15) in the multi-symbol shape
# stand in for the 30Min answer: the roll-up does not depend on the finer grid's step.
amzn = fixture_json("alpaca", "stock_symbol_bars_AMZN_15Min.json")
AMZN_PAGE = encode({"bars": {"AMZN": amzn["bars"]}, "next_page_token": None})

BARS = [
    # Alpaca stamps a day at New York midnight (05:00Z in winter); ours is 00:00Z that date.
    BarsCase(
        "multi-symbol-daily-bars",
        fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json"),
        MAR9,
        [
            bar(
                "AAPL", Interval.D1, MAR9_DAY, (161.51, 163.41, 159.41, 162.95), 88496480, 161.942117, 700291
            ),
            bar("TSLA", Interval.D1, MAR9_DAY, (839.0, 860.56, 832.01, 858.97), 19227323, 850.616587, 528531),
        ],
        {
            "symbols": "AAPL,TSLA",
            "timeframe": "1Day",
            "start": "2022-03-08T00:00:00Z",
            "end": "2022-03-11T00:00:00Z",
            "limit": "10000",
        },
    ),
    # Hours start at the 13:30Z open: 15:30-16:30Z holds the 16:00 and 16:15 bars,
    # 16:30-17:30Z only the 16:30 bar (which is passed on as recorded).
    BarsCase(
        "hourly-bars-are-rolled-up-from-30-minute-bars-into-session-hours",
        AMZN_PAGE,
        BarRequest(
            symbols=("AMZN",),
            exchange_mic="XNAS",
            interval=Interval.H1,
            start=HOUR_START,
            end=datetime(2021, 10, 15, 17, 30, tzinfo=UTC),
        ),
        [
            bar(
                "AMZN",
                Interval.H1,
                HOUR_START,
                (3378.14, 3383.24, 3376.3001, 3377.82),
                327539,
                3379.25274,
                10979,
            ),
            bar(
                "AMZN",
                Interval.H1,
                datetime(2021, 10, 15, 16, 30, tzinfo=UTC),
                (3377.982, 3380.86, 3377.0, 3380.0),
                58531,
                3379.100605,
                3679,
            ),
        ],
        {"timeframe": "30Min", "end": "2021-10-15T18:30:00Z"},
        exact_query=False,
    ),
    BarsCase(
        "empty-bars-are-an-empty-list",
        fixture_bytes("alpaca", "stocks_bars_empty.json"),
        MAR9,
        [],
        {"symbols": "AAPL,TSLA", "timeframe": "1Day"},
        exact_query=False,
    ),
]

QUOTES = [
    # MSFT is absent from the answer: only AAPL comes back; ts is the later of trade and quote
    QuotesCase(
        "quotes-come-from-snapshots",
        fixture_bytes("alpaca", "stocks_snapshots_AAPL.json"),
        ["AAPL", "MSFT"],
        "XNAS",
        [
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
        ],
        {"symbols": "AAPL,MSFT"},
    ),
]

# fmt: off
ERRORS = [
    ErrorCase("401", 401, fixture_bytes("alpaca", "error_401_unauthorized.json"), AuthError, False,
              message_part="unauthorized"),
    ErrorCase("403-forbidden", 403, fixture_bytes("alpaca", "error_403_forbidden.json"), AuthError, False,
              message_part="forbidden"),
    ErrorCase("403-recent-sip", 403, fixture_bytes("alpaca", "error_403_recent_sip.json"), AuthError, False,
              message_part="subscription does not permit querying recent SIP data"),
    # no market-data 429 body was ever recorded; the status and header decide
    ErrorCase("429-no-retry-after", 429, b"", RateLimitedError, True),
    ErrorCase("429-retry-after-seconds", 429, b"", RateLimitedError, True, headers={"Retry-After": "3"},
              retry_after=3.0),
    ErrorCase("429-retry-after-date", 429, b"", RateLimitedError, True,
              headers={"Retry-After": http_date(NOW + timedelta(seconds=45))}, retry_after=45.0),
    ErrorCase("500", 500, b"", ServerError, True),
    ErrorCase("504", 504, b"upstream timed out", ServerError, True, content_type="text/plain"),
    ErrorCase("422-legacy", 422, fixture_bytes("alpaca", "error_422_code_message_legacy.json"),
              RequestError, False,
              message_part="your subscription does not permit querying data from the past 15 minutes"),
    ErrorCase("400-unexpected-parameter", 400,
              fixture_bytes("alpaca", "error_unexpected_query_parameter.json"), RequestError, False,
              message_part="unexpected query parameter(s): limit"),
    ErrorCase("malformed-json", 200, fixture_bytes("alpaca", "stocks_bars_multi_AAPL_TSLA.json")[:80],
              BadPayloadError, False),
    ErrorCase("plain-text-200", 200, PLAIN_TEXT_200, BadPayloadError, False, content_type="text/plain"),
    # a real Alpaca body of another endpoint: snapshots have no `bars`
    ErrorCase("wrong-shape", 200, fixture_bytes("alpaca", "stocks_snapshots_AAPL.json"), BadPayloadError,
              False),
    ErrorCase("single-symbol-shape", 200, fixture_bytes("alpaca", "stock_symbol_bars_AMZN_15Min.json"),
              BadPayloadError, False),
]
# fmt: on

VENDOR = Vendor(
    kind="alpaca",
    adapter=AlpacaProvider,
    credentials=Credentials(key=KEY_ID, secret=SECRET),
    env={"ALPACA_API_KEY_ID": KEY_ID, "ALPACA_API_SECRET_KEY": SECRET},
    request_headers={"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET},
    default_base_url="https://data.alpaca.markets",
    default_calls_per_minute=200,
    capabilities=Capabilities(
        bar_intervals=frozenset(Interval),
        quotes=True,
        max_symbols_per_request=100,
        exchanges=frozenset({"XNYS", "XNAS", "ARCX", "XASE", "BATS", "IEXG", "C247"}),
        corporate_actions=True,
    ),
    base_path="",
    bars_path="/v2/stocks/bars",
    quotes_path="/v2/stocks/snapshots",
    bars=BARS,
    quotes=QUOTES,
    # `{}` is alpaca-py's recorded answer for a symbol without data (test_get_snapshot_multi_empty_response)
    quote_without_data=QuotesCase("no-snapshot-at-all", b"{}", ["ZZZZ"], "XNYS", [], {}),
    error_request=MAR9,
    errors=ERRORS,
    quote_error=next(case for case in ERRORS if case.id == "403-forbidden"),
    secrets=[KEY_ID, SECRET],
)
