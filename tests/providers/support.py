"""Helpers shared by the provider adapter tests: recorded fixtures and the error matrix."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from market_data.providers.errors import (
    ProviderError,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def fixture_bytes(provider: str, name: str) -> bytes:
    """A recorded response body from tests/fixtures/providers/<provider>/<name>."""
    return (FIXTURES / provider / name).read_bytes()


def fixture_json(provider: str, name: str) -> Any:
    """A recorded JSON body, parsed (for tests that reshape it, e.g. pagination)."""
    return json.loads(fixture_bytes(provider, name))


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


def http_date(when: Any) -> str:
    return format_datetime(when, usegmt=True)


class ErrorCase(msgspec.Struct, frozen=True):
    """One HTTP answer and the error an adapter must turn it into."""

    id: str
    status: int
    body: bytes
    error: type[ProviderError]
    retryable: bool
    headers: dict[str, str] = {}
    message_part: str = ""
    content_type: str = "application/json"
    retry_after: float | None = None
    """Seconds a RateLimitedError must carry (from the Retry-After header)."""


# A plain-text body with status 200 (Tiingo's symbol-limit answer): no adapter may accept it.
PLAIN_TEXT_200 = fixture_bytes("tiingo", "error_200_symbol_limit.txt")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Block until `condition()` holds (the test server works in its own thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def capture_http_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Capture httpx/httpcore logs at DEBUG, even after Airflow's logging setup silenced them."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        caplog.set_level(logging.DEBUG, logger=name)
