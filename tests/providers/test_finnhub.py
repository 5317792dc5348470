"""Finnhub's own quirks (the contract every vendor meets is in test_contract.py)."""

from __future__ import annotations

from pytest_httpserver import HTTPServer

from .conftest import MakeAdapter
from .support import fixture_bytes
from .vendors.finnhub import API_KEY, VENDOR, daily


async def test_the_key_travels_in_a_header_never_as_the_token_parameter(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    # Finnhub documents `?token=`; it also accepts the X-Finnhub-Token header, which keeps the
    # key out of every URL (httpx logs each request URL).
    httpserver.expect_request(VENDOR.bars_path).respond_with_data(
        fixture_bytes("finnhub", "stock_candle_no_data.json"), content_type="application/json"
    )
    httpserver.expect_request(VENDOR.quotes_path).respond_with_data(
        fixture_bytes("finnhub", "quote_docs_sample.json"), content_type="application/json"
    )
    adapter = make(VENDOR)
    await adapter.fetch_bars(daily())
    await adapter.fetch_quotes(["AAPL"], "XNAS")
    assert len(httpserver.log) == 2
    for request, _ in httpserver.log:
        assert "token" not in request.args
        assert request.headers["X-Finnhub-Token"] == API_KEY
