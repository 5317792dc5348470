"""What a subscribe or unsubscribe request changes on one connection: rules without I/O.

A connection follows bar keys (ticker or pattern, interval) and quote keys (ticker or
pattern). A request is checked and turned into the keys it adds or removes and the names
its reply echoes; the session then asks the store about tickers and tells the hub.
"""

from __future__ import annotations

import msgspec

from api.ws.protocol import DEFAULT_INTERVALS, Problem, Subscribe, Unsubscribe, is_pattern, normalize_patterns

BarKey = tuple[str, str]
"""(ticker or pattern, interval)"""


class SubscribeChange(msgspec.Struct, frozen=True, kw_only=True):
    bars: list[str]
    """Tickers and patterns of the request's `bars`, normalized (the reply echoes them)."""
    quotes: list[str]
    intervals: list[str]
    bar_keys: set[BarKey]
    quote_keys: set[str]

    @property
    def tickers(self) -> list[str]:
        """The request's tickers (not patterns), each once: the ones the universe must hold."""
        return list(dict.fromkeys(n for n in [*self.bars, *self.quotes] if not is_pattern(n)))

    def unknown(self, missing: list[str]) -> Problem:
        """`not_found`, naming the first request field that holds one of `missing`."""
        field = next(
            f"{name}[{i}]"
            for name, values in (("bars", self.bars), ("quotes", self.quotes))
            for i, v in enumerate(values)
            if v in missing
        )
        return Problem(field, f"{field}: not in the universe: {', '.join(missing[:20])}", "not_found")


class UnsubscribeChange(msgspec.Struct, frozen=True, kw_only=True):
    bars: list[str]
    quotes: list[str]
    intervals: list[str]
    bar_keys: set[BarKey]
    """Keys the connection follows and stops following."""
    quote_keys: set[str]


def subscription_count(bar_keys: set[BarKey], quote_keys: set[str]) -> int:
    """Distinct tickers and patterns followed, bars and quotes together (what the limit counts)."""
    return len({name for name, _ in bar_keys} | quote_keys)


def _names(request: Subscribe | Unsubscribe, none_given: str) -> tuple[list[str], list[str]] | Problem:
    """The request's normalized `bars` and `quotes`; `none_given` explains a request with neither."""
    bars = normalize_patterns(request.bars, "bars")
    if isinstance(bars, Problem):
        return bars
    quotes = normalize_patterns(request.quotes, "quotes")
    if isinstance(quotes, Problem):
        return quotes
    if not bars and not quotes:
        return Problem("bars", f"bars: {none_given}")
    return bars, quotes


def plan_subscribe(
    request: Subscribe, bar_keys: set[BarKey], quote_keys: set[str], max_subscriptions: int
) -> SubscribeChange | Problem:
    """The keys `request` adds to a connection that follows `bar_keys` and `quote_keys`."""
    names = _names(request, "name at least one ticker or pattern in `bars` or `quotes`")
    if isinstance(names, Problem):
        return names
    bars, quotes = names
    intervals = [
        i for i in dict.fromkeys(DEFAULT_INTERVALS if request.intervals is None else request.intervals)
    ]
    if not intervals:
        return Problem("intervals", "intervals: name at least one interval (or leave it out for 1m)")
    new_bars = {(b, iv) for b in bars for iv in intervals}
    new_quotes = set(quotes)
    total = subscription_count(bar_keys | new_bars, quote_keys | new_quotes)
    if total > max_subscriptions:
        field = "bars" if bars else "quotes"
        return Problem(
            field,
            f"{field}: at most {max_subscriptions} tickers and patterns per connection; "
            f"this request would make {total}",
            "limit",
        )
    return SubscribeChange(
        bars=bars, quotes=quotes, intervals=intervals, bar_keys=new_bars, quote_keys=new_quotes
    )


def plan_unsubscribe(
    request: Unsubscribe, bar_keys: set[BarKey], quote_keys: set[str]
) -> UnsubscribeChange | Problem:
    """The keys `request` removes from a connection that follows `bar_keys` and `quote_keys`."""
    if request.all:
        return UnsubscribeChange(
            bars=sorted({n for n, _ in bar_keys}),
            quotes=sorted(quote_keys),
            intervals=sorted({iv for _, iv in bar_keys}),
            bar_keys=set(bar_keys),
            quote_keys=set(quote_keys),
        )
    names = _names(request, "name what to unsubscribe from in `bars` or `quotes` (or all: true)")
    if isinstance(names, Problem):
        return names
    bars, quotes = names
    wanted = set(request.intervals) if request.intervals else None
    gone_bars = {(n, iv) for n, iv in bar_keys if n in bars and (wanted is None or iv in wanted)}
    return UnsubscribeChange(
        bars=bars,
        quotes=quotes,
        intervals=sorted(wanted) if wanted else sorted({iv for _, iv in gone_bars}),
        bar_keys=gone_bars,
        quote_keys=quote_keys & set(quotes),
    )


def by_interval(bar_keys: set[BarKey]) -> dict[str, list[str]]:
    """interval -> tickers and patterns (sorted): what a snapshot of `bar_keys` reads."""
    out: dict[str, list[str]] = {}
    for name, iv in sorted(bar_keys):
        out.setdefault(iv, []).append(name)
    return out
