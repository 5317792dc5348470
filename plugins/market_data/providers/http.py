"""What the HTTP vendor adapters share: the `VendorAdapter` base, one client per vendor,
statuses to errors.

A vendor adapter gets bodies of 2xx answers or a ProviderError that says what went wrong
(auth, rate limit with Retry-After, server, request, bad payload). Credentials travel in
headers, never in URLs, so no log line or error message can carry them.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import ClassVar, Self, TypeVar

import httpx
import msgspec

from market_data.policy.schema import ProviderPolicy
from market_data.providers.alignment import calendar_bars, session_date
from market_data.providers.base import BarRequest, Capabilities
from market_data.providers.credentials import Credentials, MissingCredentialsError
from market_data.providers.errors import (
    AuthError,
    BadPayloadError,
    ProviderError,
    RateLimitedError,
    RequestError,
    ServerError,
)
from market_data.records import Bar, Interval, utcnow

T = TypeVar("T")

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
    provider: str,
    response: httpx.Response,
    vendor_message: str | None,
    now: datetime,
    redact: Callable[[str], str] = lambda text: text,
) -> ProviderError:
    """The ProviderError an HTTP error status means: 401/403 auth, 429 rate limit, 5xx server, 4xx request.

    Args:
        redact: applied to the vendor's words (some vendors echo the key they were sent).
    """
    status = response.status_code
    detail = redact(vendor_message or _body_excerpt(response.content) or response.reason_phrase)
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
        # header values the vendor could echo back in an error (API keys); short ones are not keys
        self._secrets = sorted((v for v in (headers or {}).values() if len(v) >= 8), key=len, reverse=True)
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
        raise http_error(
            self.provider, response, self._error_message(response.content), self._clock(), self._redact
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

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


class VendorAdapter:
    """Base of the HTTP vendor adapters: the constructor, the client and the bar plumbing they share.

    A subclass sets `kind`, `default_base_url`, `capabilities` and `default_calls_per_minute`,
    says how its credentials travel (`headers`) and where its error bodies keep the vendor's
    words (`error_message`), and implements `fetch_bars` and `fetch_quotes`.
    """

    kind: ClassVar[str]
    default_base_url: ClassVar[str]
    capabilities: Capabilities
    default_calls_per_minute: int

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        name: str | None = None,
        base_url: str | None = None,
        options: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name or self.kind
        self.options = dict(options or {})
        """The policy's `options` (validated against the kind's `SPEC.options`)."""
        self._clock = clock
        self._http = VendorHttp(
            self.name,
            base_url or self.default_base_url,
            headers=self.headers(credentials),
            error_message=self.error_message,
            timeout=timeout,
            clock=clock,
        )

    @classmethod
    def from_policy(cls, name: str, cfg: ProviderPolicy, credentials: Credentials | None) -> Self:
        """The adapter for a policy's provider section (the `factory` of the kind's SPEC)."""
        return cls(credentials, name=name, base_url=cfg.base_url, options=cfg.options)

    def headers(self, credentials: Credentials | None) -> dict[str, str]:
        """Headers of every request (credentials go here, never into URLs)."""
        return {}

    @staticmethod
    def error_message(body: bytes) -> str | None:
        """The vendor's own error text in an error body; None when the body is not its error shape."""
        return None

    def required(self, credentials: Credentials | None) -> Credentials:
        """`credentials`, for an adapter that cannot work without them (its SPEC names a source)."""
        if credentials is None:
            raise MissingCredentialsError(self.kind, "this adapter needs credentials")
        return credentials

    async def aclose(self) -> None:
        await self._http.aclose()

    def vendor_bar(
        self,
        symbol: str,
        request: BarRequest,
        ts: datetime,
        ohlc: tuple[float, float, float, float],
        volume: float,
        *,
        vwap: float | None = None,
        trade_count: int | None = None,
    ) -> Bar:
        """A bar as the vendor stamps it; a day bar gets its session date (vendors stamp days at
        an exchange-local midnight), `calendar_bars` does the rest."""
        open_, high, low, close = ohlc
        return Bar(
            symbol=symbol,
            interval=request.interval,
            ts=session_date(request.exchange_mic, ts) if request.interval is Interval.D1 else ts,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=float(volume),  # never rounded: crypto volumes are fractions of a coin
            vwap=vwap,
            trade_count=trade_count,
            provider=self.name,
        )

    def calendar_bars(self, vendor_bars: list[Bar], request: BarRequest) -> list[Bar]:
        """The vendor's bars as the calendar's: in the session, complete by now, in [start, end)."""
        return calendar_bars(
            vendor_bars,
            request.exchange_mic,
            request.interval,
            request.start,
            request.end,
            self._clock(),
            self.name,
        )
