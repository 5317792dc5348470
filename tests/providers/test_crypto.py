"""Crypto pairs through the real adapters: each vendor's own pair form on the wire, our `BTC-USD`
in the bars and quotes, fractional volumes and sizes kept, against recorded bodies (real HTTP
to pytest-httpserver; provenance and what was assumed in tests/fixtures/providers/README.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer

from market_data.calendar import CRYPTO_MIC
from market_data.policy import parse_policy
from market_data.policy.schema import ProviderPolicy
from market_data.providers import spec_for
from market_data.providers.alpaca import crypto_pair
from market_data.providers.base import BarRequest
from market_data.providers.errors import EmptyDataError, RequestError
from market_data.providers.finnhub import FinnhubProvider
from market_data.providers.yahoo import YahooProvider
from market_data.records import Bar, Interval, Quote
from market_data.registry import ProviderRegistry

from .conftest import MakeAdapter
from .support import fixture_bytes, fixture_json
from .vendors import alpaca, finnhub, yahoo

CRYPTO_BARS = "/v1beta3/crypto/us/bars"
CRYPTO_QUOTES = "/v1beta3/crypto/us/latest/quotes"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def request(*symbols: str, interval: Interval, start: datetime, end: datetime) -> BarRequest:
    return BarRequest(symbols=symbols, exchange_mic=CRYPTO_MIC, interval=interval, start=start, end=end)


def test_our_pair_form_maps_to_alpacas() -> None:
    assert crypto_pair("BTC-USD") == "BTC/USD" and crypto_pair("USDT-USD") == "USDT/USD"
    assert crypto_pair("BTCUSD") is None and crypto_pair("-USD") is None and crypto_pair("BTC-") is None


async def test_alpaca_crypto_minutes_come_from_the_crypto_endpoint_with_fractional_volumes(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    # the SDK mock's recorded request: BCH/USD 1Min from 11:12:00 to 11:21:07
    query = {
        "symbols": "BCH/USD",
        "timeframe": "1Min",
        "start": "2021-11-11T11:12:00Z",
        "end": "2021-11-11T11:21:07Z",
        "limit": "10000",
    }
    httpserver.expect_request(CRYPTO_BARS, query_string=query).respond_with_data(
        fixture_bytes("alpaca", "crypto_bars_v1beta3_BCHUSD_1Min_sdk_mock.json"),
        content_type="application/json",
    )
    adapter = make(alpaca.VENDOR, options={"feed": "iex"})  # an equity option: not sent for crypto

    bars = await adapter.fetch_bars(
        request(
            "BCH-USD", interval=Interval.M1, start=utc(2021, 11, 11, 11, 12), end=utc(2021, 11, 11, 11, 21, 7)
        )
    )

    httpserver.check_assertions()
    # 11 recorded minutes; 11:11 is before the requested start
    assert [b.ts.minute for b in bars] == list(range(12, 22))
    assert bars[0] == Bar(
        symbol="BCH-USD",
        interval=Interval.M1,
        ts=utc(2021, 11, 11, 11, 12),
        open=679.44,
        high=679.53,
        low=679.44,
        close=679.53,
        volume=0.18841132,
        vwap=679.5228170977,
        trade_count=8,
        provider="alpaca",
    )
    assert [b.volume for b in bars[-2:]] == [1.9829005, 3.53102371]


async def test_alpaca_crypto_bars_follow_the_page_token_of_the_docs_example(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    body = fixture_json("alpaca", "crypto_bars_v1beta3_BTCUSD_docs_example.json")
    query = {
        "symbols": "BTC/USD",
        "timeframe": "1Min",
        "start": "2022-05-27T10:00:00Z",
        "end": "2022-05-27T11:00:00Z",
        "limit": "10000",
    }
    httpserver.expect_ordered_request(CRYPTO_BARS, query_string=query).respond_with_data(
        fixture_bytes("alpaca", "crypto_bars_v1beta3_BTCUSD_docs_example.json"),
        content_type="application/json",
    )
    httpserver.expect_ordered_request(
        CRYPTO_BARS, query_string={**query, "page_token": body["next_page_token"]}
    ).respond_with_data(fixture_bytes("alpaca", "stocks_bars_empty.json"), content_type="application/json")

    bars = await make(alpaca.VENDOR).fetch_bars(
        request("BTC-USD", interval=Interval.M1, start=utc(2022, 5, 27, 10), end=utc(2022, 5, 27, 11))
    )

    assert [(b.symbol, b.ts, b.close, b.volume, b.trade_count) for b in bars] == [
        ("BTC-USD", utc(2022, 5, 27, 10, 18), 29003.0, 0.01, 4)
    ]
    httpserver.check_assertions()
    assert len(httpserver.log) == 2


async def test_alpaca_crypto_quotes_are_the_latest_books_with_fractional_sizes(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        CRYPTO_QUOTES, query_string={"symbols": "BTC/USD,ETH/USD,DOGE/USD"}
    ).respond_with_data(
        fixture_bytes("alpaca", "crypto_latest_quotes_v1beta3_docs_example.json"),
        content_type="application/json",
    )

    quotes = await make(alpaca.VENDOR).fetch_quotes(["BTC-USD", "ETH-USD", "DOGE-USD"], CRYPTO_MIC)

    # DOGE/USD is not in the answer; a book has no trade, so `last` is its middle
    assert quotes == [
        Quote(
            symbol="BTC-USD",
            ts=datetime(2022, 5, 26, 11, 47, 18, 443471, tzinfo=UTC),
            provider="alpaca",
            last=29058.5,
            bid=29058.0,
            ask=29059.0,
            bid_size=0.3544,
            ask_size=3.252,
        ),
        Quote(
            symbol="ETH-USD",
            ts=datetime(2022, 5, 26, 11, 47, 18, 499478, tzinfo=UTC),
            provider="alpaca",
            last=1817.35,
            bid=1817.0,
            ask=1817.7,
            bid_size=4.76,
            ask_size=6.137,
        ),
    ]


async def test_alpaca_sdk_mock_quote_and_a_pair_without_a_book(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request(CRYPTO_QUOTES, query_string={"symbols": "BTC/USD"}).respond_with_data(
        fixture_bytes("alpaca", "crypto_latest_quotes_v1beta3_BTCUSD_sdk_mock.json"),
        content_type="application/json",
    )
    # an answer that holds none of the pairs asked for (the docs example, asked for another pair)
    httpserver.expect_ordered_request(CRYPTO_QUOTES, query_string={"symbols": "ZZZ/USD"}).respond_with_data(
        fixture_bytes("alpaca", "crypto_latest_quotes_v1beta3_docs_example.json"),
        content_type="application/json",
    )
    adapter = make(alpaca.VENDOR)
    (btc,) = await adapter.fetch_quotes(["BTC-USD"], CRYPTO_MIC)
    assert (btc.bid, btc.ask, btc.last, btc.bid_size, btc.ask_size) == (
        40517.08,
        40765.93,
        40641.505,
        4.0178,
        1.5516,
    )
    with pytest.raises(EmptyDataError):
        await adapter.fetch_quotes(["ZZZ-USD"], CRYPTO_MIC)


async def test_alpaca_refuses_a_symbol_that_is_not_a_pair_before_calling(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    with pytest.raises(RequestError, match="BTCUSD"):
        await make(alpaca.VENDOR).fetch_bars(
            request("BTCUSD", interval=Interval.M1, start=utc(2022, 5, 27, 10), end=utc(2022, 5, 27, 11))
        )
    assert httpserver.log == []


async def test_yahoo_crypto_days_are_utc_days_including_a_us_holiday(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        "/v8/finance/chart/BTC-USD",
        # a day either side: vendors stamp days up to a day away from the UTC date
        query_string={
            "interval": "1d",
            "period1": "1577750400",
            "period2": "1578182400",
            "includePrePost": "false",
        },
    ).respond_with_data(
        fixture_bytes("yahoo", "chart_v8_BTC-USD_1d_2020-01-01.json"), content_type="application/json"
    )

    bars = await make(yahoo.VENDOR).fetch_bars(
        request("BTC-USD", interval=Interval.D1, start=utc(2020, 1, 1), end=utc(2020, 1, 4))
    )

    # 1 January (NYSE closed) is a session of the 24/7 calendar; float32 noise rounded away
    assert [(b.ts, b.open, b.close, b.volume) for b in bars] == [
        (utc(2020, 1, 1), 7194.8921, 7200.1743, 18565664997.0),
        (utc(2020, 1, 2), 7202.5513, 6985.4702, 20802083465.0),
        (utc(2020, 1, 3), 6984.4287, 7344.8843, 28111481032.0),
    ]


async def test_yahoo_crypto_day_in_progress_is_not_a_bar_but_gives_the_quote(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v8/finance/chart/BTC-USD").respond_with_data(
        fixture_bytes("yahoo", "chart_v8_BTC-USD_1d_range_1d_live_bar.json"), content_type="application/json"
    )
    recorded_at = utc(2025, 2, 19, 5, 3, 53)  # the recording's Date header
    adapter = make(yahoo.VENDOR, now=recorded_at)

    bars = await adapter.fetch_bars(
        request("BTC-USD", interval=Interval.D1, start=utc(2025, 2, 19), end=utc(2025, 2, 20))
    )
    quotes = await adapter.fetch_quotes(["BTC-USD"], CRYPTO_MIC)

    assert bars == []  # stamped 05:02 on 19 February, a day that ends at midnight UTC
    assert quotes == [Quote(symbol="BTC-USD", ts=utc(2025, 2, 19, 5, 2), provider="yahoo", last=95219.02)]


async def test_finnhub_serves_stock_exchanges_only_and_is_never_asked_for_a_pair() -> None:
    assert not spec_for("finnhub").capabilities_for(ProviderPolicy()).serves_exchange(CRYPTO_MIC)
    for kind in ("alpaca", "yahoo", "synthetic"):
        assert spec_for(kind).capabilities_for(ProviderPolicy()).serves_exchange(CRYPTO_MIC), kind

    policy = parse_policy(
        '[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n'
        "[providers.finnhub]\npriority = 1\n[providers.yahoo]\npriority = 2\n"
    )
    adapters = {"finnhub": FinnhubProvider(finnhub.VENDOR.credentials), "yahoo": YahooProvider()}
    try:
        registry = ProviderRegistry(policy, adapters)
        assert registry.candidates("bars:1m", (), "XNYS") == ["finnhub", "yahoo"]
        assert registry.candidates("bars:1m", (), CRYPTO_MIC) == ["yahoo"]
        assert registry.candidates("quotes", (), CRYPTO_MIC) == ["yahoo"]
    finally:
        for adapter in adapters.values():
            await adapter.aclose()
