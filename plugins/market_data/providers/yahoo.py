"""Yahoo Finance adapter: the v8 chart endpoint, one symbol per call, no key.

`GET /v8/finance/chart/{symbol}?interval=&period1=&period2=&includePrePost=false` answers
`chart.result[0]` with `timestamp` and parallel `indicators.quote[0]` arrays (bar starts,
session-aligned), or `chart.error` with a 4xx. Quotes come from the same answer's `meta`
(`regularMarketPrice` at `regularMarketTime`). Symbols use Yahoo's own suffixes
(`VOD.L`, `7203.T`), as the universe does, and its own pair form for crypto (`BTC-USD`, ours
too): the same chart, with bars every minute of the day and daily bars at 00:00 UTC.

Corporate actions come from the same chart with `events=div|split` (daily bars over the
range): `events.splits` / `events.dividends`, each keyed by the timestamp of its ex-date's bar
(the session open, so its UTC date is the ex-date), splits as `numerator` new shares for
`denominator` old, dividends as `amount` per share in the chart's `meta.currency`.

Yahoo publishes no API documentation or limits; the limits here are the ones its
clients observe, kept conservative because it answers bursts with 429s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote as url_quote

import msgspec

from market_data.corporate_actions import ActionKind, CorporateAction
from market_data.providers.alignment import fetch_window, from_epoch
from market_data.providers.base import BarRequest, Capabilities, ProviderSpec
from market_data.providers.credentials import Credentials
from market_data.providers.errors import BadPayloadError, EmptyDataError, RequestError
from market_data.providers.http import VendorAdapter, decode_payload, single_symbol
from market_data.records import Bar, Interval, Quote

NO_DATA_IN_RANGE = "Data doesn't exist for startDate"
DEFAULT_CALLS_PER_MINUTE = 30
# Yahoo refuses some non-browser user agents with 429; this one is honest but browser-shaped.
USER_AGENT = "Mozilla/5.0 (compatible; market-data/0.1)"

INTERVALS: dict[Interval, str] = {
    Interval.M1: "1m",
    Interval.M5: "5m",
    Interval.M15: "15m",
    Interval.H1: "60m",
    Interval.D1: "1d",
}

CAPABILITIES = Capabilities(
    bar_intervals=frozenset(INTERVALS),
    quotes=True,
    max_symbols_per_request=1,
    corporate_actions=True,
    # Longest range one chart call accepts per interval (Yahoo answers 422 beyond it).
    max_range={
        Interval.M1: timedelta(days=7),
        Interval.M5: timedelta(days=60),
        Interval.M15: timedelta(days=60),
        Interval.H1: timedelta(days=730),
    },
)

# Yahoo serves prices as float32 values widened to double (225.6999969482422); four
# decimals restore the exchange's ticks, so identical bars compare equal across calls.
_PRICE_DECIMALS = 4


# -- wire schemas -----------------------------------------------------------------------
class YahooQuoteArrays(msgspec.Struct):
    """`indicators.quote[0]`: parallel arrays with null for minutes without trades; `{}` when empty."""

    open: list[float | None] = []
    high: list[float | None] = []
    low: list[float | None] = []
    close: list[float | None] = []
    volume: list[float | None] = []


class YahooIndicators(msgspec.Struct):
    quote: list[YahooQuoteArrays] = []


class YahooMeta(msgspec.Struct, rename="camel"):
    symbol: str
    regular_market_price: float | None = None
    regular_market_time: int | None = None
    currency: str | None = None


class YahooSplit(msgspec.Struct):
    date: int
    numerator: float
    denominator: float


class YahooDividend(msgspec.Struct):
    date: int
    amount: float


class YahooEvents(msgspec.Struct):
    """`events` of a chart asked with `events=div|split`; absent when the range has none."""

    splits: dict[str, YahooSplit] = {}
    dividends: dict[str, YahooDividend] = {}


class YahooResult(msgspec.Struct):
    meta: YahooMeta
    indicators: YahooIndicators
    timestamp: list[int] = []
    """Absent when the range holds no bars (weekends, holidays)."""
    events: YahooEvents | None = None


class YahooError(msgspec.Struct):
    code: str
    description: str = ""


class YahooChart(msgspec.Struct):
    result: list[YahooResult] | None = None
    error: YahooError | None = None


class YahooChartResponse(msgspec.Struct):
    chart: YahooChart


_CHART = msgspec.json.Decoder(YahooChartResponse)


def _price(value: float) -> float:
    return round(value, _PRICE_DECIMALS)


DEFAULT_CURRENCY = "USD"
"""A dividend's currency when the chart's `meta` has none (every recorded chart has one)."""


def chart_actions(provider: str, result: YahooResult) -> list[CorporateAction]:
    """The splits and cash dividends of a chart answer (`events`), by ex-date."""
    events = result.events or YahooEvents()
    symbol = result.meta.symbol
    out = [
        CorporateAction(
            symbol=symbol,
            kind=ActionKind.SPLIT,
            ex_date=from_epoch(s.date).date(),
            provider=provider,
            split_from=s.denominator,
            split_to=s.numerator,
        )
        for s in events.splits.values()
        if s.numerator > 0 and s.denominator > 0
    ]
    out += [
        CorporateAction(
            symbol=symbol,
            kind=ActionKind.CASH_DIVIDEND,
            ex_date=from_epoch(d.date).date(),
            provider=provider,
            amount=d.amount,
            currency=result.meta.currency or DEFAULT_CURRENCY,
        )
        for d in events.dividends.values()
        if d.amount > 0
    ]
    return sorted(out, key=lambda a: (a.ex_date, a.kind.value))


# -- client -----------------------------------------------------------------------------
class YahooProvider(VendorAdapter):
    """Yahoo Finance adapter (kind `yahoo`)."""

    kind = "yahoo"
    default_base_url = "https://query2.finance.yahoo.com"
    capabilities = CAPABILITIES
    default_calls_per_minute = DEFAULT_CALLS_PER_MINUTE

    def headers(self, credentials: Credentials | None) -> dict[str, str]:
        return {"User-Agent": USER_AGENT}

    @staticmethod
    def error_message(body: bytes) -> str | None:
        try:
            error = _CHART.decode(body).chart.error
        except msgspec.DecodeError:
            return None
        return f"{error.code}: {error.description}" if error else None

    async def _chart(self, symbol: str, params: dict[str, str | int]) -> YahooResult:
        body = await self._http.get(f"/v8/finance/chart/{url_quote(symbol, safe='')}", params)
        chart = decode_payload(self.name, _CHART, body, "chart").chart
        if chart.error is not None:
            # a 200 that carries an error: Yahoo's verdict on the request
            raise RequestError(self.name, f"chart: {chart.error.code}: {chart.error.description}")
        if not chart.result:
            raise BadPayloadError(self.name, "chart: neither result nor error")
        return chart.result[0]

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        symbol = single_symbol(self.name, request.symbols)
        lo, hi = fetch_window(request.interval, request.start, request.end, finer=False)
        try:
            result = await self._chart(
                symbol,
                {
                    "interval": INTERVALS[request.interval],
                    "period1": math.floor(lo.timestamp()),
                    "period2": math.ceil(hi.timestamp()),
                    "includePrePost": "false",
                },
            )
        except RequestError as exc:
            # Yahoo answers 400 "Data doesn't exist for startDate = ..." for a range before the
            # symbol traded: an answer (no bars there), so a backfill records it as confirmed empty.
            if exc.status == 400 and NO_DATA_IN_RANGE in exc.message:
                return []
            raise
        if not result.timestamp:
            return []
        return self.calendar_bars(self._chart_bars(symbol, request, result), request)

    def _chart_bars(self, symbol: str, request: BarRequest, result: YahooResult) -> list[Bar]:
        if len(result.indicators.quote) != 1:
            raise BadPayloadError(self.name, "chart: expected one indicators.quote entry")
        q = result.indicators.quote[0]
        columns = (q.open, q.high, q.low, q.close, q.volume)
        if any(len(col) != len(result.timestamp) for col in columns):
            raise BadPayloadError(self.name, "chart: timestamp and quote arrays differ in length")
        out: list[Bar] = []
        for t, o, h, low, c, v in zip(result.timestamp, *columns, strict=True):
            # Yahoo lists minutes without trades with every field null: not a bar.
            if o is None or h is None or low is None or c is None:
                continue
            ohlc = (_price(o), _price(h), _price(low), _price(c))
            out.append(self.vendor_bar(symbol, request, from_epoch(t), ohlc, v or 0))
        return out

    async def fetch_corporate_actions(
        self, symbols: Sequence[str], exchange_mic: str, start: date, end: date
    ) -> list[CorporateAction]:
        symbol = single_symbol(self.name, symbols)
        lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
        hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
        params: dict[str, str | int] = {
            "interval": "1d",
            "period1": math.floor(lo.timestamp()),
            "period2": math.ceil(hi.timestamp()),
            "events": "div|split",
        }
        try:
            result = await self._chart(symbol, params)
        except RequestError as exc:
            if exc.status == 400 and NO_DATA_IN_RANGE in exc.message:
                return []
            raise
        return [a for a in chart_actions(self.name, result) if start <= a.ex_date <= end]

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        symbol = single_symbol(self.name, symbols)
        result = await self._chart(symbol, {"interval": "1d", "range": "1d"})
        meta = result.meta
        if not meta.regular_market_price or not meta.regular_market_time:
            raise EmptyDataError(self.name, f"quote: no regular-market price for {symbol}")
        return [
            Quote(
                symbol=symbol,
                ts=from_epoch(meta.regular_market_time),
                provider=self.name,
                last=_price(meta.regular_market_price),
            )
        ]


SPEC = ProviderSpec(
    kind=YahooProvider.kind,
    capabilities=CAPABILITIES,
    default_calls_per_minute=DEFAULT_CALLS_PER_MINUTE,
    factory=YahooProvider.from_policy,
)
