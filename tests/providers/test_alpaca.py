"""Alpaca's own quirks: pagination, US exchanges only, the feed option (the contract every
vendor meets is in test_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer

from market_data.policy.schema import ProviderPolicy
from market_data.providers.alpaca import AlpacaProvider
from market_data.providers.errors import BadPayloadError, RateLimitedError, RequestError

from .conftest import MakeAdapter
from .support import encode, fixture_bytes, fixture_json
from .vendors.alpaca import MAR9, VENDOR, daily

PAGE_TOKEN = "QUFQTHxEfDIwMjItMDItMDJUMDU6MDA6MDAuMDAwMDAwMDAwWg=="
FIRST_PAGE = fixture_bytes("alpaca", "stocks_bars_AAPL_with_next_page_token.json")  # full: 2 bars


def paging(make: MakeAdapter, page_limit: int = 10_000) -> AlpacaProvider:
    adapter = make(VENDOR)
    assert isinstance(adapter, AlpacaProvider)
    adapter.page_limit = page_limit
    return adapter


async def test_pagination_follows_tokens_to_a_partial_last_page(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    last_page = fixture_json("alpaca", "stocks_bars_multi_AAPL_TSLA.json")
    del last_page["bars"]["TSLA"]  # partial: 1 bar, AAPL continued from page 1
    query = {
        "symbols": "AAPL,TSLA",
        "timeframe": "1Day",
        "start": "2022-01-31T00:00:00Z",
        "end": "2022-03-11T00:00:00Z",
        "limit": "2",
    }
    httpserver.expect_ordered_request(VENDOR.bars_path, query_string=query).respond_with_data(
        FIRST_PAGE, content_type="application/json"
    )
    httpserver.expect_ordered_request(
        VENDOR.bars_path, query_string={**query, "page_token": PAGE_TOKEN}
    ).respond_with_data(encode(last_page), content_type="application/json")

    bars = await paging(make, page_limit=2).fetch_bars(
        daily("AAPL", "TSLA", start="2022-02-01", end="2022-03-10")
    )

    httpserver.check_assertions()
    assert len(httpserver.log) == 2
    assert [(b.symbol, b.ts, b.close) for b in bars] == [
        ("AAPL", datetime(2022, 2, 1, tzinfo=UTC), 174.61),
        ("AAPL", datetime(2022, 2, 2, tzinfo=UTC), 175.84),
        ("AAPL", datetime(2022, 3, 9, tzinfo=UTC), 162.95),
    ]
    assert bars[0].open == 174.0 and bars[0].volume == 85998033 and bars[0].trade_count == 732412


async def test_a_repeating_page_token_is_a_bad_payload(make: MakeAdapter, httpserver: HTTPServer) -> None:
    # the recorded page always points at its own successor token: a loop if served forever
    httpserver.expect_request(VENDOR.bars_path).respond_with_data(FIRST_PAGE, content_type="application/json")
    with pytest.raises(BadPayloadError, match="repeats"):
        await paging(make).fetch_bars(daily("AAPL", start="2022-02-01", end="2022-03-10"))
    assert len(httpserver.log) == 2


async def test_an_error_on_a_later_page_fails_the_whole_call(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request(VENDOR.bars_path).respond_with_data(
        FIRST_PAGE, content_type="application/json"
    )
    httpserver.expect_ordered_request(VENDOR.bars_path).respond_with_data(
        b"", status=429, headers={"Retry-After": "2"}
    )
    with pytest.raises(RateLimitedError) as caught:
        await paging(make).fetch_bars(daily("AAPL", start="2022-02-01", end="2022-03-10"))
    assert caught.value.retry_after == 2.0


async def test_foreign_exchanges_and_oversized_batches_are_refused_without_a_call(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    adapter = make(VENDOR)
    with pytest.raises(RequestError, match="US exchanges"):
        await adapter.fetch_bars(daily("VOD.L", start="2024-01-02", end="2024-01-03", mic="XLON"))
    with pytest.raises(RequestError, match="US exchanges"):
        await adapter.fetch_quotes(["7203.T"], "XTKS")
    with pytest.raises(RequestError, match="1 to 100 symbols"):
        await adapter.fetch_bars(daily(*[f"S{i}" for i in range(101)], start="2024-01-02", end="2024-01-03"))
    assert httpserver.log == []


async def test_the_policys_feed_option_reaches_both_endpoints(httpserver: HTTPServer) -> None:
    httpserver.expect_request(VENDOR.bars_path).respond_with_data(
        fixture_bytes("alpaca", "stocks_bars_empty.json"), content_type="application/json"
    )
    httpserver.expect_request(VENDOR.quotes_path).respond_with_data(
        fixture_bytes("alpaca", "stocks_snapshots_AAPL.json"), content_type="application/json"
    )
    policy = ProviderPolicy(kind="alpaca", base_url=httpserver.url_for("/"), options={"feed": "iex"})
    adapter = AlpacaProvider.from_policy("alpaca", policy, VENDOR.credentials)
    try:
        await adapter.fetch_bars(MAR9)
        await adapter.fetch_quotes(["AAPL"], "XNAS")
    finally:
        await adapter.aclose()
    assert [request.args["feed"] for request, _ in httpserver.log] == ["iex", "iex"]
