"""Finnhub REST adapter: stock candles and quotes, one symbol per call.

Endpoints: `GET /stock/candle?symbol=&resolution=&from=&to=` (arrays `t,o,h,l,c,v` and a
status `s`: `ok` or `no_data`) and `GET /quote?symbol=` (`c` last, `t` its time).
Splits: `GET /stock/split?symbol=&from=&to=` (a list of `{symbol, date, fromFactor, toFactor}`,
`date` the ex-date, newest first); a 1-for-1 entry (Finnhub-API issue #392 shows some) changes
nothing and is dropped. The key travels in the `X-Finnhub-Token` header, which Finnhub accepts in place of the
`token` query parameter, so it never appears in a URL (httpx logs every request URL).

Finnhub's 60-minute candles are clock-aligned and include extended hours (Finnhub-API
issue #309), so 1h bars are rolled up from 30-minute candles into session-aligned hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import msgspec

from market_data.corporate_actions import ActionKind, CorporateAction
from market_data.providers.alignment import fetch_window, from_epoch
from market_data.providers.base import BarRequest, Capabilities, ProviderSpec
from market_data.providers.credentials import Credentials, CredentialSource
from market_data.providers.errors import BadPayloadError, EmptyDataError
from market_data.providers.http import VendorAdapter, decode_payload, single_symbol
from market_data.records import Bar, Interval, Quote

DEFAULT_CALLS_PER_MINUTE = 60
"""Free plan: 60 calls/min (plus 30 calls/s on every plan)."""

# Finnhub resolution per interval; 1h comes from 30-minute candles (see module docstring).
RESOLUTIONS: dict[Interval, str] = {
    Interval.M1: "1",
    Interval.M5: "5",
    Interval.M15: "15",
    Interval.H1: "30",
    Interval.D1: "D",
}
_ROLLED_UP = frozenset({Interval.H1})

STOCK_EXCHANGES = frozenset(
    {
        *("XNYS", "XNAS", "ARCX", "XASE", "BATS", "IEXG"),  # US
        *("XLON", "XETR", "XFRA", "XPAR", "XAMS", "XBRU", "XLIS", "XDUB", "XMIL", "XMAD", "XSWX"),
        *("XSTO", "XOSL", "XHEL", "XCSE", "XWAR", "XWBO", "XIST", "XTAE", "XJSE"),
        *("XTKS", "XHKG", "XSHG", "XKRX", "XTAI", "XSES", "XBOM", "XIDX", "XKLS", "XBKK", "XPHS"),
        *("XASX", "XNZE", "XTSE", "XMEX", "BVMF"),
    }
)
"""Stock exchanges `/stock/candle` and `/quote` serve (by Finnhub's symbol suffixes: `.L`, `.T`,
`.TO`, ...). Crypto pairs are not among them: Finnhub's crypto candles are another endpoint,
with exchange-prefixed symbols (`BINANCE:BTCUSDT`), that this adapter does not call."""

CAPABILITIES = Capabilities(
    bar_intervals=frozenset(RESOLUTIONS),
    quotes=True,
    max_symbols_per_request=1,
    exchanges=STOCK_EXCHANGES,
    corporate_actions=True,
    # Finnhub truncates long intraday answers silently; its maintainers advise a month per
    # call (Finnhub-API issue #406).
    max_range={interval: timedelta(days=30) for interval in RESOLUTIONS if interval.is_intraday},
)


# -- wire schemas -----------------------------------------------------------------------
class FinnhubCandles(msgspec.Struct):
    """`/stock/candle`: parallel arrays, or just `{"s": "no_data"}`."""

    s: str
    t: list[int] = []
    o: list[float] = []
    h: list[float] = []
    l: list[float] = []  # noqa: E741 - Finnhub's field name
    c: list[float] = []
    v: list[float] = []


class FinnhubQuote(msgspec.Struct):
    """`/quote`; `d`/`dp` appeared in 2021, older answers lack them."""

    c: float
    h: float
    l: float  # noqa: E741 - Finnhub's field name
    o: float
    pc: float
    t: int
    d: float | None = None
    dp: float | None = None


class FinnhubError(msgspec.Struct):
    error: str


_CANDLES = msgspec.json.Decoder(FinnhubCandles)
_QUOTE = msgspec.json.Decoder(FinnhubQuote)
_ERROR = msgspec.json.Decoder(FinnhubError)


# -- client -----------------------------------------------------------------------------
class FinnhubSplit(msgspec.Struct, rename="camel"):
    symbol: str
    date: date
    from_factor: float
    to_factor: float


_SPLITS = msgspec.json.Decoder(list[FinnhubSplit])


def split_actions(provider: str, splits: list[FinnhubSplit]) -> list[CorporateAction]:
    """The splits of a `/stock/split` answer that change the share count, by ex-date."""
    return sorted(
        (
            CorporateAction(
                symbol=s.symbol,
                kind=ActionKind.SPLIT,
                ex_date=s.date,
                provider=provider,
                split_from=s.from_factor,
                split_to=s.to_factor,
            )
            for s in splits
            if s.from_factor > 0 and s.to_factor > 0 and s.from_factor != s.to_factor
        ),
        key=lambda a: a.ex_date,
    )


class FinnhubProvider(VendorAdapter):
    """Finnhub adapter (kind `finnhub`)."""

    kind = "finnhub"
    default_base_url = "https://finnhub.io/api/v1"
    capabilities = CAPABILITIES
    default_calls_per_minute = DEFAULT_CALLS_PER_MINUTE

    def headers(self, credentials: Credentials | None) -> dict[str, str]:
        return {"X-Finnhub-Token": self.required(credentials).key}

    @staticmethod
    def error_message(body: bytes) -> str | None:
        try:
            return _ERROR.decode(body).error
        except msgspec.DecodeError:
            return None

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        symbol = single_symbol(self.name, request.symbols)
        interval = request.interval
        lo, hi = fetch_window(interval, request.start, request.end, finer=interval in _ROLLED_UP)
        body = await self._http.get(
            "/stock/candle",
            {
                "symbol": symbol,
                "resolution": RESOLUTIONS[interval],
                "from": math.floor(lo.timestamp()),
                "to": math.ceil(hi.timestamp()),
            },
        )
        candles = decode_payload(self.name, _CANDLES, body, "candles")
        if candles.s == "no_data":
            return []
        if candles.s != "ok":
            raise BadPayloadError(self.name, f"candles: unexpected status s={candles.s!r}")
        columns = (candles.o, candles.h, candles.l, candles.c, candles.v)
        if any(len(col) != len(candles.t) for col in columns):
            raise BadPayloadError(self.name, "candles: arrays t,o,h,l,c,v differ in length")
        vendor_bars = [
            self.vendor_bar(symbol, request, from_epoch(t), (o, h, low, c), v)
            for t, o, h, low, c, v in zip(candles.t, *columns, strict=True)
        ]
        return self.calendar_bars(vendor_bars, request)

    async def fetch_corporate_actions(
        self, symbols: Sequence[str], exchange_mic: str, start: date, end: date
    ) -> list[CorporateAction]:
        symbol = single_symbol(self.name, symbols)
        body = await self._http.get(
            "/stock/split", {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}
        )
        return split_actions(self.name, decode_payload(self.name, _SPLITS, body, "splits"))

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        symbol = single_symbol(self.name, symbols)
        body = await self._http.get("/quote", {"symbol": symbol})
        quote = decode_payload(self.name, _QUOTE, body, "quote")
        # Unknown symbols (and outages) answer 200 with every field 0.
        if quote.t <= 0 or quote.c <= 0:
            raise EmptyDataError(self.name, f"quote: no data for {symbol}")
        return [Quote(symbol=symbol, ts=from_epoch(quote.t), provider=self.name, last=quote.c)]


SPEC = ProviderSpec(
    kind=FinnhubProvider.kind,
    capabilities=CAPABILITIES,
    default_calls_per_minute=DEFAULT_CALLS_PER_MINUTE,
    credentials=CredentialSource(key_env="FINNHUB_API_KEY", conn_id="finnhub_default", key_field="password"),
    factory=FinnhubProvider.from_policy,
)
