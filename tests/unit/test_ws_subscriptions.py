"""What a WebSocket subscribe or unsubscribe request changes on a connection (no I/O)."""

from __future__ import annotations

from api.ws.protocol import Problem, Subscribe, Unsubscribe
from api.ws.subscriptions import SubscribeChange, UnsubscribeChange, plan_subscribe, plan_unsubscribe
from market_data.records import Interval


def test_the_subscription_limit_counts_a_ticker_once_across_bars_quotes_and_intervals() -> None:
    request = Subscribe(bars=["aapl", "MSFT"], quotes=["AAPL"], intervals=[Interval.M1, Interval.M5])
    change = plan_subscribe(request, set(), set(), max_subscriptions=2)
    assert isinstance(change, SubscribeChange)
    assert change.bars == ["AAPL", "MSFT"] and change.intervals == ["1m", "5m"]
    assert len(change.bar_keys) == 4 and change.quote_keys == {"AAPL"}
    refused = plan_subscribe(Subscribe(quotes=["NVDA"]), change.bar_keys, change.quote_keys, 2)
    assert refused == Problem(
        "quotes", "quotes: at most 2 tickers and patterns per connection; this request would make 3", "limit"
    )


def test_only_tickers_are_checked_against_the_universe_and_the_first_unknown_is_named() -> None:
    change = plan_subscribe(Subscribe(bars=["GEN*", "AAPL"], quotes=["NOPE", "AAPL"]), set(), set(), 10)
    assert isinstance(change, SubscribeChange)
    assert change.tickers == ["AAPL", "NOPE"]
    assert change.unknown(["NOPE"]).parameter == "quotes[0]"


def test_unsubscribing_an_interval_keeps_the_others() -> None:
    following = {("AAPL", "1m"), ("AAPL", "5m"), ("MSFT", "1m")}
    change = plan_unsubscribe(Unsubscribe(bars=["AAPL"], intervals=[Interval.M5]), following, {"AAPL"})
    assert isinstance(change, UnsubscribeChange)
    assert change.bar_keys == {("AAPL", "5m")} and change.quote_keys == set()
    assert (change.bars, change.intervals) == (["AAPL"], ["5m"])


def test_unsubscribing_all_names_everything_followed() -> None:
    following = {("MSFT", "5m"), ("AAPL", "1m")}
    change = plan_unsubscribe(Unsubscribe(all=True), following, {"NVDA"})
    assert isinstance(change, UnsubscribeChange)
    assert (change.bars, change.quotes, change.intervals) == (["AAPL", "MSFT"], ["NVDA"], ["1m", "5m"])
    assert change.bar_keys == following


def test_a_request_naming_nothing_is_refused() -> None:
    assert plan_subscribe(Subscribe(), set(), set(), 10) == Problem(
        "bars", "bars: name at least one ticker or pattern in `bars` or `quotes`"
    )
    refused = plan_unsubscribe(Unsubscribe(), set(), set())
    assert isinstance(refused, Problem) and refused.parameter == "bars"
