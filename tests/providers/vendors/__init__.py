"""What each vendor's recorded answers must become, for the contract every adapter meets.

One module per vendor (finnhub, yahoo, alpaca) describes its endpoints, its recorded bodies
(tests/fixtures/providers/, see its README) and the bars, quotes and errors they must turn
into; `test_contract.py` runs the same tests over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from market_data.providers.base import BarRequest, Capabilities
from market_data.providers.credentials import Credentials
from market_data.providers.http import VendorAdapter
from market_data.records import Bar, Quote

from ..support import ErrorCase

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class BarsCase:
    """A recorded bars answer and the bars it must give for `request` as seen at `now`."""

    id: str
    body: bytes
    request: BarRequest
    expected: list[Bar]
    query: dict[str, str]
    """Query parameters of the request the adapter sent."""
    exact_query: bool = True
    """False: `query` is a subset of what was sent."""
    now: datetime = NOW


@dataclass(frozen=True)
class QuotesCase:
    """A recorded quotes answer and the quotes it must give (`query`: what must be asked)."""

    id: str
    body: bytes
    symbols: list[str]
    exchange_mic: str
    expected: list[Quote]
    query: dict[str, str]


@dataclass(frozen=True)
class Vendor:
    kind: str
    adapter: type[VendorAdapter]
    credentials: Credentials | None
    env: dict[str, str]
    """Environment variables that give `credentials` (for building through the kind's SPEC)."""
    request_headers: dict[str, str]
    """Headers every request carries (credentials among them)."""
    default_base_url: str
    default_calls_per_minute: int
    capabilities: Capabilities
    base_path: str
    """Path of the API under the server (the policy's base_url ends with it)."""
    bars_path: str
    quotes_path: str
    bars: list[BarsCase]
    quotes: list[QuotesCase]
    quote_without_data: QuotesCase
    """An answer with nothing to quote (its `expected` is unused: it must be EmptyDataError)."""
    error_request: BarRequest
    """The bars request the error matrix is served to."""
    errors: list[ErrorCase]
    quote_error: ErrorCase
    secrets: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.kind
