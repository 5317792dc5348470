"""Yahoo's own quirks (the contract every vendor meets is in test_contract.py)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from market_data.providers.errors import RequestError

from .conftest import MakeAdapter
from .support import fixture_bytes
from .vendors.yahoo import OCT2, VENDOR


async def test_symbols_with_suffixes_go_into_the_path(make: MakeAdapter, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v8/finance/chart/VOD.L").respond_with_data(
        fixture_bytes("yahoo", "chart_v8_AAPL_1m_no_bars_weekend.json"), content_type="application/json"
    )
    quotes = await make(VENDOR).fetch_quotes(["VOD.L"], "XLON")
    assert quotes[0].symbol == "VOD.L"


async def test_no_data_for_the_range_is_an_empty_answer_not_an_error(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    """400 "Data doesn't exist for startDate" (a range before the symbol traded) means no bars."""
    httpserver.expect_request(VENDOR.bars_path).respond_with_data(
        fixture_bytes("yahoo", "chart_v8_error_400_bad_request.json"),
        status=400,
        content_type="application/json",
    )
    assert await make(VENDOR).fetch_bars(OCT2) == []


async def test_other_400s_stay_request_errors(make: MakeAdapter, httpserver: HTTPServer) -> None:
    httpserver.expect_request(VENDOR.bars_path).respond_with_json(
        {
            "chart": {
                "result": None,
                "error": {"code": "Bad Request", "description": "Invalid input - interval=7m"},
            }
        },
        status=400,
    )
    with pytest.raises(RequestError, match="Invalid input"):
        await make(VENDOR).fetch_bars(OCT2)
