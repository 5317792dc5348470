"""Alpaca market data adapter: multi-symbol bars and quotes of US equities and crypto pairs.

Equities (US exchanges): `GET /v2/stocks/bars?symbols=A,B&timeframe=&start=&end=&limit=&page_token=`
answers `{"bars": {symbol: [{t,o,h,l,c,v,n,vw}]}, "next_page_token": ...}`; `limit` counts bars
across all symbols and a symbol may continue on the next page. Quotes:
`GET /v2/stocks/snapshots?symbols=` gives the latest trade and the latest quote in one
call (`/v2/stocks/quotes/latest` has no trade price, and a Quote needs `last`).

Crypto pairs (`calendar.CRYPTO_MIC`): `GET /v1beta3/crypto/us/bars` answers in the same shape,
keyed by Alpaca's pair form `BTC/USD` (ours is `BTC-USD`), with fractional volumes; quotes
come from `GET /v1beta3/crypto/us/latest/quotes` (`{"quotes": {pair: {t, bp, bs, ap, as}}}`),
which carries no trade, so a pair's `last` is the middle of its bid and ask.

Corporate actions (US equities): `GET /v1/corporate-actions?symbols=&types=&start=&end=&limit=
&page_token=` answers `{"corporate_actions": {"forward_splits": [...], "reverse_splits": [...],
"cash_dividends": [...], "name_changes": [...], "worthless_removals": [...], ...},
"next_page_token": ...}`; splits give `new_rate` shares for `old_rate`, cash dividends a
`rate` per share (Alpaca states no currency: US equities, so USD), a name change
`old_symbol` -> `new_symbol` effective on its `process_date`, a worthless removal (a delisting)
on its `process_date`. The older v1beta1 answer (no `id`, no CUSIPs) decodes the same.

Authentication is the APCA-API-KEY-ID / APCA-API-SECRET-KEY header pair.

Alpaca's 1Hour bars are clock-aligned and include extended hours (alpaca-py issues #397,
#580), so 1h bars are rolled up from 30Min bars into session-aligned hours; intraday
bars outside the regular session are dropped like every provider's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime

import msgspec

from market_data.calendar import CRYPTO_MIC
from market_data.corporate_actions import ActionKind, CorporateAction
from market_data.providers.alignment import fetch_window
from market_data.providers.base import BarRequest, Capabilities, ProviderSpec
from market_data.providers.credentials import Credentials, CredentialSource
from market_data.providers.errors import BadPayloadError, EmptyDataError, RequestError
from market_data.providers.http import VendorAdapter, check_batch, decode_payload
from market_data.records import Bar, Interval, Quote, ensure_utc

DEFAULT_CALLS_PER_MINUTE = 200
"""Free (Basic) plan: 200 calls/min."""
MAX_SYMBOLS_PER_REQUEST = 100
PAGE_LIMIT = 10_000
"""Bars per page (Alpaca's maximum)."""
MAX_PAGES = 1_000
"""Guard against a pagination that never ends (a vendor bug), far above any real range."""
US_EXCHANGES = frozenset({"XNYS", "XNAS", "ARCX", "XASE", "BATS", "IEXG"})
CRYPTO_LOCATION = "us"
"""Alpaca's crypto feed (`/v1beta3/crypto/{loc}/...`): its US venues."""

# Alpaca timeframe per interval; 1h comes from 30Min bars (see module docstring).
TIMEFRAMES: dict[Interval, str] = {
    Interval.M1: "1Min",
    Interval.M5: "5Min",
    Interval.M15: "15Min",
    Interval.H1: "30Min",
    Interval.D1: "1Day",
}
_ROLLED_UP = frozenset({Interval.H1})

CAPABILITIES = Capabilities(
    bar_intervals=frozenset(TIMEFRAMES),
    quotes=True,
    max_symbols_per_request=MAX_SYMBOLS_PER_REQUEST,
    exchanges=US_EXCHANGES | {CRYPTO_MIC},
    corporate_actions=True,
)
ACTION_TYPES = "forward_split,reverse_split,cash_dividend,name_change,worthless_removal"
ACTION_PAGE_LIMIT = 1_000
DIVIDEND_CURRENCY = "USD"


# -- wire schemas -----------------------------------------------------------------------
class AlpacaBar(msgspec.Struct):
    t: datetime
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: float
    n: int | None = None
    vw: float | None = None


class AlpacaBarsPage(msgspec.Struct):
    bars: dict[str, list[AlpacaBar]] | None
    next_page_token: str | None = None


class AlpacaTrade(msgspec.Struct):
    t: datetime
    p: float


class AlpacaQuote(msgspec.Struct):
    t: datetime
    ap: float
    bp: float
    ask_size: float | None = msgspec.field(default=None, name="as")
    bs: float | None = None
    """Sizes: whole shares for equities, fractions of a coin for crypto pairs."""


class AlpacaSplit(msgspec.Struct):
    symbol: str
    ex_date: date
    new_rate: float
    old_rate: float
    record_date: date | None = None
    payable_date: date | None = None


class AlpacaCashDividend(msgspec.Struct):
    symbol: str
    ex_date: date
    rate: float
    record_date: date | None = None
    payable_date: date | None = None


class AlpacaNameChange(msgspec.Struct):
    old_symbol: str
    new_symbol: str
    process_date: date


class AlpacaRemoval(msgspec.Struct):
    symbol: str
    process_date: date


class AlpacaActionLists(msgspec.Struct):
    forward_splits: list[AlpacaSplit] = []
    reverse_splits: list[AlpacaSplit] = []
    cash_dividends: list[AlpacaCashDividend] = []
    name_changes: list[AlpacaNameChange] = []
    worthless_removals: list[AlpacaRemoval] = []


class AlpacaActionsPage(msgspec.Struct):
    corporate_actions: AlpacaActionLists
    next_page_token: str | None = None


_ACTIONS = msgspec.json.Decoder(AlpacaActionsPage)


def page_actions(provider: str, lists: AlpacaActionLists) -> list[CorporateAction]:
    """The splits, cash dividends, ticker changes and delistings of one answer page."""
    out = [
        CorporateAction(
            symbol=s.symbol,
            kind=ActionKind.SPLIT,
            ex_date=s.ex_date,
            provider=provider,
            split_from=s.old_rate,
            split_to=s.new_rate,
            record_date=s.record_date,
            pay_date=s.payable_date,
        )
        for s in (*lists.forward_splits, *lists.reverse_splits)
        if s.old_rate > 0 and s.new_rate > 0
    ]
    out += [
        CorporateAction(
            symbol=d.symbol,
            kind=ActionKind.CASH_DIVIDEND,
            ex_date=d.ex_date,
            provider=provider,
            amount=d.rate,
            currency=DIVIDEND_CURRENCY,
            record_date=d.record_date,
            pay_date=d.payable_date,
        )
        for d in lists.cash_dividends
        if d.rate > 0
    ]
    out += [
        CorporateAction(
            symbol=n.new_symbol,
            kind=ActionKind.TICKER_CHANGE,
            ex_date=n.process_date,
            provider=provider,
            old_ticker=n.old_symbol,
            new_ticker=n.new_symbol,
        )
        for n in lists.name_changes
    ]
    out += [
        CorporateAction(symbol=r.symbol, kind=ActionKind.DELISTING, ex_date=r.process_date, provider=provider)
        for r in lists.worthless_removals
    ]
    return out


class AlpacaSnapshot(msgspec.Struct, rename="camel"):
    latest_trade: AlpacaTrade | None = None
    latest_quote: AlpacaQuote | None = None


class AlpacaLatestQuotes(msgspec.Struct):
    quotes: dict[str, AlpacaQuote]


class AlpacaError(msgspec.Struct):
    message: str
    code: int | None = None


_BARS = msgspec.json.Decoder(AlpacaBarsPage)
_SNAPSHOTS = msgspec.json.Decoder(dict[str, AlpacaSnapshot])
_LATEST_QUOTES = msgspec.json.Decoder(AlpacaLatestQuotes)
_ERROR = msgspec.json.Decoder(AlpacaError)


def _rfc3339(value: datetime) -> str:
    return ensure_utc(value).isoformat().replace("+00:00", "Z")


def _side(price: float) -> float | None:
    """A book side's price; Alpaca reports an empty side as 0."""
    return price if price > 0 else None


def crypto_pair(symbol: str) -> str | None:
    """Alpaca's form of one of our crypto pairs (`BTC-USD` -> `BTC/USD`); None when `symbol` is
    not BASE-QUOTE."""
    base, sep, quote = symbol.rpartition("-")
    return f"{base}/{quote}" if sep and base and quote else None


# -- client -----------------------------------------------------------------------------
class AlpacaProvider(VendorAdapter):
    """Alpaca market data adapter (kind `alpaca`)."""

    kind = "alpaca"
    default_base_url = "https://data.alpaca.markets"
    capabilities = CAPABILITIES
    default_calls_per_minute = DEFAULT_CALLS_PER_MINUTE
    extra_request_gate: Callable[[], Awaitable[object]] | None = None
    """Awaited before each page after the first (the registry: one rate-limit slot)."""
    page_limit = PAGE_LIMIT
    """Bars per page (tests lower it to page through short recorded answers)."""

    def headers(self, credentials: Credentials | None) -> dict[str, str]:
        key_pair = self.required(credentials)
        return {"APCA-API-KEY-ID": key_pair.key, "APCA-API-SECRET-KEY": key_pair.secret or ""}

    @staticmethod
    def error_message(body: bytes) -> str | None:
        try:
            return _ERROR.decode(body).message
        except msgspec.DecodeError:
            return None

    @property
    def feed(self) -> str | None:
        """`iex`, `sip` or `delayed_sip`; None lets Alpaca pick the best one the subscription allows."""
        return self.options.get("feed")

    def _check_exchange(self, mic: str) -> None:
        # Alpaca would answer {} for a foreign symbol, which reads as "confirmed empty".
        if mic not in CAPABILITIES.exchanges:
            raise RequestError(self.name, f"serves US exchanges and crypto pairs only, not {mic}")

    def _vendor_symbols(self, symbols: Sequence[str], mic: str) -> dict[str, str]:
        """Alpaca's symbol of each of ours (crypto pairs change form), in request order."""
        if mic != CRYPTO_MIC:
            return {s: s for s in symbols}
        pairs = {s: crypto_pair(s) for s in symbols}
        if bad := [s for s, pair in pairs.items() if pair is None]:
            raise RequestError(self.name, f"not crypto pairs (BASE-QUOTE, e.g. BTC-USD): {', '.join(bad)}")
        return {pair: s for s, pair in pairs.items() if pair is not None}

    async def fetch_bars(self, request: BarRequest) -> list[Bar]:
        self._check_exchange(request.exchange_mic)
        symbols = check_batch(self.name, request.symbols, MAX_SYMBOLS_PER_REQUEST)
        ours = self._vendor_symbols(symbols, request.exchange_mic)
        interval = request.interval
        lo, hi = fetch_window(interval, request.start, request.end, finer=interval in _ROLLED_UP)
        params: dict[str, str | int] = {
            "symbols": ",".join(ours),
            "timeframe": TIMEFRAMES[interval],
            "start": _rfc3339(lo),
            "end": _rfc3339(hi),
            "limit": self.page_limit,
        }
        crypto = request.exchange_mic == CRYPTO_MIC
        if self.feed and not crypto:  # `feed` is an equity option; crypto has one US feed
            params["feed"] = self.feed
        path = f"/v1beta3/crypto/{CRYPTO_LOCATION}/bars" if crypto else "/v2/stocks/bars"
        vendor_bars: list[Bar] = []
        seen_tokens: set[str] = set()
        for page_no in range(MAX_PAGES):
            if page_no and self.extra_request_gate is not None:
                await self.extra_request_gate()
            page = decode_payload(self.name, _BARS, await self._http.get(path, params), "bars")
            for vendor_symbol, items in (page.bars or {}).items():
                if (symbol := ours.get(vendor_symbol)) is not None:
                    vendor_bars.extend(
                        self.vendor_bar(
                            symbol,
                            request,
                            ensure_utc(item.t),
                            (item.o, item.h, item.l, item.c),
                            item.v,
                            vwap=item.vw,
                            trade_count=item.n,
                        )
                        for item in items
                    )
            token = page.next_page_token
            if not token:
                break
            if token in seen_tokens:
                raise BadPayloadError(self.name, "bars: next_page_token repeats")
            seen_tokens.add(token)
            params["page_token"] = token
        else:
            raise BadPayloadError(self.name, f"bars: more than {MAX_PAGES} pages")
        return self.calendar_bars(vendor_bars, request)

    async def fetch_corporate_actions(
        self, symbols: Sequence[str], exchange_mic: str, start: date, end: date
    ) -> list[CorporateAction]:
        if exchange_mic not in US_EXCHANGES:
            raise RequestError(self.name, f"corporate actions of US equities only, not {exchange_mic}")
        symbols = check_batch(self.name, symbols, MAX_SYMBOLS_PER_REQUEST)
        params: dict[str, str | int] = {
            "symbols": ",".join(symbols),
            "types": ACTION_TYPES,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "limit": ACTION_PAGE_LIMIT,
        }
        out: list[CorporateAction] = []
        seen_tokens: set[str] = set()
        for page_no in range(MAX_PAGES):
            if page_no and self.extra_request_gate is not None:
                await self.extra_request_gate()
            body = await self._http.get("/v1/corporate-actions", params)
            page = decode_payload(self.name, _ACTIONS, body, "corporate_actions")
            out += page_actions(self.name, page.corporate_actions)
            token = page.next_page_token
            if not token:
                return sorted(out, key=lambda a: (a.ex_date, a.symbol, a.kind.value))
            if token in seen_tokens:
                raise BadPayloadError(self.name, "corporate_actions: next_page_token repeats")
            seen_tokens.add(token)
            params["page_token"] = token
        raise BadPayloadError(self.name, f"corporate_actions: more than {MAX_PAGES} pages")

    async def fetch_quotes(self, symbols: Sequence[str], exchange_mic: str) -> list[Quote]:
        self._check_exchange(exchange_mic)
        listed = check_batch(self.name, symbols, MAX_SYMBOLS_PER_REQUEST)
        if exchange_mic == CRYPTO_MIC:
            return await self._crypto_quotes(listed)
        params: dict[str, str | int] = {"symbols": ",".join(listed)}
        if self.feed:
            params["feed"] = self.feed
        body = await self._http.get("/v2/stocks/snapshots", params)
        snapshots = decode_payload(self.name, _SNAPSHOTS, body, "snapshots")
        out: list[Quote] = []
        for symbol in listed:
            snap = snapshots.get(symbol)
            if snap is None or snap.latest_trade is None:
                continue  # unknown symbol, or no trade yet: nothing to call "last"
            trade, book = snap.latest_trade, snap.latest_quote
            ts = ensure_utc(trade.t) if book is None else max(ensure_utc(trade.t), ensure_utc(book.t))
            out.append(
                Quote(
                    symbol=symbol,
                    ts=ts,
                    provider=self.name,
                    last=trade.p,
                    bid=_side(book.bp) if book else None,
                    ask=_side(book.ap) if book else None,
                    bid_size=book.bs if book else None,
                    ask_size=book.ask_size if book else None,
                )
            )
        if not out:
            raise EmptyDataError(self.name, f"snapshots: no data for {', '.join(listed)}")
        return out

    async def _crypto_quotes(self, listed: list[str]) -> list[Quote]:
        ours = self._vendor_symbols(listed, CRYPTO_MIC)
        body = await self._http.get(
            f"/v1beta3/crypto/{CRYPTO_LOCATION}/latest/quotes", {"symbols": ",".join(ours)}
        )
        latest = decode_payload(self.name, _LATEST_QUOTES, body, "latest quotes").quotes
        out: list[Quote] = []
        for vendor_symbol, symbol in ours.items():
            book = latest.get(vendor_symbol)
            bid, ask = (_side(book.bp), _side(book.ap)) if book else (None, None)
            if book is None or bid is None or ask is None:
                continue  # unknown pair, or a one-sided book: no middle to call "last"
            out.append(
                Quote(
                    symbol=symbol,
                    ts=ensure_utc(book.t),
                    provider=self.name,
                    last=round((bid + ask) / 2, 10),
                    bid=bid,
                    ask=ask,
                    bid_size=book.bs,
                    ask_size=book.ask_size,
                )
            )
        if not out:
            raise EmptyDataError(self.name, f"latest quotes: no data for {', '.join(listed)}")
        return out


SPEC = ProviderSpec(
    kind=AlpacaProvider.kind,
    capabilities=CAPABILITIES,
    default_calls_per_minute=DEFAULT_CALLS_PER_MINUTE,
    options={"feed": frozenset({"iex", "sip", "delayed_sip"})},
    credentials=CredentialSource(
        key_env="ALPACA_API_KEY_ID",
        secret_env="ALPACA_API_SECRET_KEY",  # noqa: S106 - a variable name, not a secret
        conn_id="alpaca_default",
        key_field="login",
        secret_field="password",  # noqa: S106 - an attribute name, not a secret
    ),
    factory=AlpacaProvider.from_policy,
)
