"""Corporate-action decoders of every vendor that has them, against recorded answers."""

from __future__ import annotations

import json
from datetime import date

from pytest_httpserver import HTTPServer

from market_data.corporate_actions import ActionKind
from market_data.providers.base import CorporateActionSource

from .conftest import MakeAdapter
from .support import fixture_bytes, fixture_json
from .vendors.alpaca import VENDOR as ALPACA
from .vendors.finnhub import VENDOR as FINNHUB
from .vendors.yahoo import VENDOR as YAHOO


def _serve(httpserver: HTTPServer, path: str, body: bytes) -> None:
    httpserver.expect_request(path).respond_with_data(body, content_type="application/json")


async def test_yahoo_chart_events_give_the_aapl_split_and_dividend(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v8/finance/chart/AAPL",
        fixture_bytes("yahoo", "chart_v8_AAPL_1d_events_split_div_2020.json"),
    )
    adapter = make(YAHOO)
    assert isinstance(adapter, CorporateActionSource)
    actions = await adapter.fetch_corporate_actions(["AAPL"], "XNAS", date(2020, 8, 31), date(2020, 11, 7))
    split, dividend = actions
    assert (split.kind, split.ex_date, split.ratio, split.symbol) == (
        ActionKind.SPLIT,
        date(2020, 8, 31),
        4,
        "AAPL",
    )
    assert (dividend.kind, dividend.ex_date, dividend.amount, dividend.currency) == (
        ActionKind.CASH_DIVIDEND,
        date(2020, 11, 6),
        0.205,
        "USD",
    )
    (request, _), *_ = httpserver.log
    assert request.args["events"] == "div|split" and request.args["interval"] == "1d"


async def test_yahoo_events_outside_the_asked_dates_are_left_out(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver, "/v8/finance/chart/MSFT", fixture_bytes("yahoo", "chart_v8_MSFT_1d_events_div_2021.json")
    )
    actions = await make(YAHOO).fetch_corporate_actions(["MSFT"], "XNAS", date(2021, 2, 1), date(2021, 6, 30))
    body = fixture_json("yahoo", "chart_v8_MSFT_1d_events_div_2021.json")
    assert len(body["chart"]["result"][0]["events"]["dividends"]) == 4
    assert [a.amount for a in actions] == [0.56, 0.56]
    assert all(a.kind is ActionKind.CASH_DIVIDEND and a.currency == "USD" for a in actions)


async def test_yahoo_nvda_2021_split(make: MakeAdapter, httpserver: HTTPServer) -> None:
    _serve(
        httpserver,
        "/v8/finance/chart/NVDA",
        fixture_bytes("yahoo", "chart_v8_NVDA_1d_events_split_2021.json"),
    )
    (split,) = await make(YAHOO).fetch_corporate_actions(
        ["NVDA"], "XNAS", date(2021, 2, 1), date(2022, 1, 31)
    )
    assert (split.ex_date, split.split_from, split.split_to) == (date(2021, 7, 20), 1, 4)


async def test_alpaca_v1_answer_decodes_every_kind_we_store(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    body = fixture_json("alpaca", "corporate_actions_v1_all_types_sdk_mock_placeholders.json")
    body["next_page_token"] = None  # one page here; pagination has its own test
    _serve(httpserver, "/v1/corporate-actions", json.dumps(body).encode())
    actions = await make(ALPACA).fetch_corporate_actions(
        ["AAPL", "TSLA"], "XNAS", date(2022, 2, 1), date(2024, 5, 1)
    )
    by_kind = {a.kind: a for a in actions}
    assert (by_kind[ActionKind.SPLIT].symbol, by_kind[ActionKind.SPLIT].ratio) in {
        ("SRE", 2.0),
        ("MNTS", 1 / 50),
    }
    reverse = next(a for a in actions if a.symbol == "MNTS")
    assert (reverse.split_from, reverse.split_to, reverse.ex_date) == (50, 1, date(2023, 8, 24))
    dividend = by_kind[ActionKind.CASH_DIVIDEND]
    assert (dividend.symbol, dividend.amount, dividend.currency, dividend.record_date, dividend.pay_date) == (
        "FCF",
        0.125,
        "USD",
        date(2023, 5, 5),
        date(2023, 5, 19),
    )
    change = by_kind[ActionKind.TICKER_CHANGE]
    assert (change.old_ticker, change.new_ticker, change.ex_date) == ("BSAQ", "VFS", date(2023, 8, 15))
    assert by_kind[ActionKind.DELISTING].symbol == "ATNXQ"
    (request, _), *_ = httpserver.log
    assert request.args["symbols"] == "AAPL,TSLA" and "cash_dividend" in request.args["types"]


async def test_alpaca_pages_follow_the_token_and_the_older_shape_decodes(
    make: MakeAdapter, httpserver: HTTPServer
) -> None:
    first = fixture_json("alpaca", "corporate_actions_v1_all_types_sdk_mock_placeholders.json")
    token = first["next_page_token"]
    httpserver.expect_ordered_request("/v1/corporate-actions").respond_with_json(first)
    httpserver.expect_ordered_request("/v1/corporate-actions").respond_with_data(
        fixture_bytes("alpaca", "corporate_actions_2024-03-10_to_14.json"), content_type="application/json"
    )
    actions = await make(ALPACA).fetch_corporate_actions(
        ["FBL"], "XNAS", date(2024, 3, 10), date(2024, 3, 14)
    )
    assert {(a.symbol, a.ratio) for a in actions if a.kind is ActionKind.SPLIT} >= {("FBL", 5), ("NVDL", 6)}
    renames = {(a.old_ticker, a.new_ticker) for a in actions if a.kind is ActionKind.TICKER_CHANGE}
    assert ("ESAC", "ZEO") in renames and ("IRRX.WS", "IRRXW") in renames
    assert [r.args.get("page_token") for r, _ in httpserver.log] == [None, token]


async def test_finnhub_splits_drop_one_for_one_entries(make: MakeAdapter, httpserver: HTTPServer) -> None:
    _serve(httpserver, "/api/v1/stock/split", fixture_bytes("finnhub", "stock_split_DIS_issue.json"))
    actions = await make(FINNHUB).fetch_corporate_actions(
        ["DIS"], "XNYS", date(1900, 1, 1), date(2021, 1, 18)
    )
    recorded = fixture_json("finnhub", "stock_split_DIS_issue.json")
    assert len(actions) == len(recorded) - sum(1 for s in recorded if s["fromFactor"] == s["toFactor"])
    assert [a.ex_date for a in actions] == sorted(a.ex_date for a in actions)
    latest = actions[-1]
    assert (latest.ex_date, latest.split_from, latest.split_to) == (date(2007, 6, 13), 9865, 10000)
    (request, _), *_ = httpserver.log
    assert (request.args["symbol"], request.args["from"], request.args["to"]) == (
        "DIS",
        "1900-01-01",
        "2021-01-18",
    )
