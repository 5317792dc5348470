"""Market-data providers: one module per vendor, all behind `base.Provider`.

`ADAPTERS` maps an adapter kind (the policy's `providers.<name>.kind`, or the name) to a
factory taking the provider's name and its policy section. `adapter_capabilities` says
what a kind can serve without building a client (no credentials, no network), for
validating a policy.

Below the registry live the pieces the HTTP adapters (finnhub, yahoo, alpaca) share: a
vendor HTTP client that turns transport failures and HTTP statuses into `errors`, and
`calendar_bars`, which turns a vendor's bars into ours (session-aligned, complete, in
range). The factories import the adapter modules lazily because those modules import
these shared pieces from this package.
"""

from __future__ import annotations

import email.utils
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
import msgspec

from market_data import calendar
from market_data.policy.schema import ProviderPolicy, SyntheticFaults
from market_data.providers.base import BarRequest, Capabilities, Provider
from market_data.providers.credentials import MissingCredentialsError
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    ProviderError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.providers.synthetic import SyntheticProvider, faults_with_env
from market_data.records import Bar, Interval, ensure_utc, utcnow

ProviderFactory = Callable[[str, ProviderPolicy], Provider]
T = TypeVar("T")


# -- registry ---------------------------------------------------------------------------
def _synthetic(name: str, cfg: ProviderPolicy) -> Provider:
    return SyntheticProvider(name, faults_with_env(cfg.faults))


def _finnhub(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import finnhub

    return finnhub.build(name, cfg)


def _yahoo(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import yahoo

    return yahoo.build(name, cfg)


def _alpaca(name: str, cfg: ProviderPolicy) -> Provider:
    from market_data.providers import alpaca

    return alpaca.build(name, cfg)


ADAPTERS: dict[str, ProviderFactory] = {
    "synthetic": _synthetic,
    "finnhub": _finnhub,
    "yahoo": _yahoo,
    "alpaca": _alpaca,
}


class UnknownAdapterError(ValueError):
    pass


def build_provider(name: str, cfg: ProviderPolicy) -> Provider:
    """Instantiate the adapter a policy's provider section names.

    Raises:
        UnknownAdapterError: the kind is not in `ADAPTERS`.
        MissingCredentialsError: the adapter needs credentials and none are configured.
    """
    kind = cfg.adapter(name)
    try:
        factory = ADAPTERS[kind]
    except KeyError:
        raise UnknownAdapterError(f"providers.{name}.kind: unknown adapter {kind!r}") from None
    return factory(name, cfg)


def adapter_capabilities(kind: str, cfg: ProviderPolicy) -> Capabilities:
    """What an adapter kind can serve, without building a client (no credentials, no network).

    Raises:
        UnknownAdapterError: the kind is not in `ADAPTERS`.
    """
    if kind == "synthetic":
        # Mirrors SyntheticProvider.__init__; the policy's faults, not env overrides, since
        # this answers "what does this policy document ask for".
        faults = cfg.faults or SyntheticFaults()
        return Capabilities(
            bar_intervals=frozenset(Interval),
            quotes=True,
            max_symbols_per_request=faults.symbols_per_request,
        )
    if kind == "finnhub":
        from market_data.providers import finnhub

        return finnhub.CAPABILITIES
    if kind == "yahoo":
        from market_data.providers import yahoo

        return yahoo.CAPABILITIES
    if kind == "alpaca":
        from market_data.providers import alpaca

        return alpaca.CAPABILITIES
    raise UnknownAdapterError(f"unknown adapter {kind!r}")


# -- shared by the HTTP adapters: transport and errors ----------------------------------
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_ERROR_TEXT_LIMIT = 200

Params = Mapping[str, str | int]


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _body_excerpt(body: bytes) -> str:
    """The start of a non-JSON body on one line, for error messages."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text[:_ERROR_TEXT_LIMIT]


def http_error(
    provider: str, response: httpx.Response, vendor_message: str | None, now: datetime
) -> ProviderError:
    """The ProviderError an HTTP error status means: 401/403 auth, 429 rate limit, 5xx server, 4xx request."""
    status = response.status_code
    detail = vendor_message or _body_excerpt(response.content) or response.reason_phrase
    message = f"HTTP {status}: {detail}"
    if status in (401, 403):
        return AuthError(provider, message, status=status)
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), now)
        return RateLimitedError(provider, message, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(provider, message, status=status)
    if status >= 400:
        return RequestError(provider, message, status=status)
    # 1xx/3xx: redirects are not followed (a consent or login page is not market data)
    return BadPayloadError(provider, f"unexpected HTTP {status}", status=status)


class VendorHttp:
    """One vendor's httpx client: GETs that return the 2xx body or raise the matching ProviderError.

    `error_message` extracts the vendor's own error text from an error body (None when the
    body is not the vendor's error shape). Credentials belong in `headers`, never in URLs,
    so httpx's request log line and our messages cannot carry them.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        error_message: Callable[[bytes], str | None],
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.provider = provider
        self._error_message = error_message
        self._clock = clock
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            follow_redirects=False,
        )

    async def get(self, path: str, params: Params | None = None) -> bytes:
        """GET `path` under the base URL; the body of a 2xx answer."""
        try:
            response = await self._client.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise ServerError(self.provider, f"GET {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServerError(self.provider, f"GET {path}: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.content
        raise http_error(self.provider, response, self._error_message(response.content), self._clock())

    async def aclose(self) -> None:
        await self._client.aclose()


def decode_payload(provider: str, decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """Decode a 2xx body with the vendor's decoder; BadPayloadError when it is not that shape."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadPayloadError(provider, f"{what}: unexpected shape: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadPayloadError(provider, f"{what}: not JSON ({exc}): {_body_excerpt(body)!r}") from None


def single_symbol(provider: str, symbols: Iterable[str]) -> str:
    """The one symbol of a request to a single-symbol endpoint; RequestError otherwise."""
    listed = list(symbols)
    if len(listed) != 1:
        raise RequestError(provider, f"one symbol per request, got {len(listed)}")
    return listed[0]


def check_batch(provider: str, symbols: Iterable[str], limit: int) -> list[str]:
    """The symbols of a multi-symbol request, refused with RequestError beyond `limit` (or none)."""
    listed = list(symbols)
    if not listed or len(listed) > limit:
        raise RequestError(provider, f"1 to {limit} symbols per request, got {len(listed)}")
    return listed


# -- shared by the HTTP adapters: vendor bars -> the calendar's bars ---------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ns(ts: datetime) -> int:
    """Exact nanoseconds since the epoch (float timestamps lose precision at this scale)."""
    return (ensure_utc(ts) - _EPOCH) // _MICROSECOND * 1000


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def session_date(mic: str, ts: datetime) -> datetime:
    """A daily bar's `ts` (its session date at 00:00 UTC) from the time a vendor stamped it with.

    Vendors stamp a day at exchange-local midnight (Finnhub, Alpaca), at the open (Yahoo)
    or at UTC midnight; the exchange-local date is the session date for the first two, and
    for UTC midnight the UTC date is (in the Americas local time is still the day before).
    """
    utc = ensure_utc(ts)
    if utc.hour == utc.minute == utc.second == utc.microsecond == 0:
        day = utc.date()
    else:
        day = utc.astimezone(calendar.exchange_calendar(mic).tz).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def fetch_window(
    interval: Interval, start: datetime, end: datetime, *, finer: bool
) -> tuple[datetime, datetime]:
    """The time range to ask a vendor for so that every bar of [start, end) is in the answer.

    Daily bars: a vendor's stamp of a session may lie up to a day either side of the
    session date in UTC. Bars rolled up from a finer grid: the last one that starts
    before `end` ends up to one interval after it.
    """
    start, end = ensure_utc(start), ensure_utc(end)
    if interval is Interval.D1:
        return start - timedelta(days=1), end + timedelta(days=1)
    if finer:
        return start, end + interval.delta
    return start, end


def _roll_up(symbol: str, interval: Interval, start_ns: int, parts: list[Bar], provider: str) -> Bar:
    """One calendar bar from the vendor bars inside it (sorted by time)."""
    first = parts[0]
    if len(parts) == 1 and _ns(first.ts) == start_ns:
        return first
    volume = sum(p.volume for p in parts)
    vwap: float | None = None
    if volume > 0 and all(p.vwap is not None for p in parts):
        vwap = round(sum((p.vwap or 0.0) * p.volume for p in parts) / volume, 6)
    counts = [p.trade_count for p in parts]
    return Bar(
        symbol=symbol,
        interval=interval,
        ts=calendar.to_datetime(start_ns),
        open=first.open,
        high=max(p.high for p in parts),
        low=min(p.low for p in parts),
        close=parts[-1].close,
        volume=volume,
        vwap=vwap,
        trade_count=None if any(c is None for c in counts) else sum(c or 0 for c in counts),
        provider=provider,
    )


def calendar_bars(
    vendor_bars: Iterable[Bar],
    mic: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    now: datetime,
    provider: str,
) -> list[Bar]:
    """The calendar's complete `interval` bars in [start, end) from vendor bars on that grid or a finer one.

    Each vendor bar goes to the calendar bar (session-aligned, see `market_data.calendar`)
    that contains its start. Bars outside every trading segment (extended hours) and bars
    of calendar bars that are out of range or not complete at `now` are dropped; several
    vendor bars in one calendar bar (a finer grid) are rolled up into it. Daily vendor bars
    must already be stamped with `session_date`.

    Raises:
        CalendarError: unknown exchange, or a range outside its calendar.
    """
    starts = calendar.expected_bar_starts_ns(mic, interval, calendar.to_ns(start), calendar.to_ns(end))
    if starts.size == 0:
        return []
    ends = calendar.bar_end_ns(mic, interval, starts)
    complete = ends <= calendar.to_ns(now)
    start_list: list[int] = starts[complete].tolist()
    end_list: list[int] = ends[complete].tolist()
    groups: dict[tuple[str, int], list[Bar]] = {}
    for bar in vendor_bars:
        ns = _ns(bar.ts)
        i = bisect_right(start_list, ns) - 1
        if i < 0 or ns >= end_list[i]:
            continue
        groups.setdefault((bar.symbol, i), []).append(bar)
    out: list[Bar] = []
    for (symbol, i), parts in sorted(groups.items()):
        parts.sort(key=lambda b: b.ts)
        out.append(_roll_up(symbol, interval, start_list[i], parts, provider))
    return out


__all__ = [
    "ADAPTERS",
    "BarRequest",
    "Capabilities",
    "MissingCredentialsError",
    "Provider",
    "UnknownAdapterError",
    "adapter_capabilities",
    "build_provider",
]
