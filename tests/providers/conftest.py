"""Provider adapter tests talk only to pytest-httpserver on this machine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer

from market_data.providers.http import VendorAdapter

from .vendors import NOW, Vendor

_LOCAL_HOSTS = {"127.0.0.1", "localhost"}

MakeAdapter = Callable[..., VendorAdapter]


@pytest.fixture(autouse=True)
def _local_http_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test whose adapter tries to reach a host other than the local test server."""
    send = httpx.AsyncClient.send

    async def guarded_send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> Any:
        assert request.url.host in _LOCAL_HOSTS, f"live network call attempted: {request.url.host}"
        return await send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", guarded_send)
    yield


@pytest.fixture
async def make(httpserver: HTTPServer) -> AsyncIterator[MakeAdapter]:
    """Builds a vendor's adapter (its test credentials, a fixed clock) against the local server
    or `base_url`; closed after the test."""
    made: list[VendorAdapter] = []

    def build(
        vendor: Vendor, *, now: datetime = NOW, base_url: str | None = None, **kwargs: Any
    ) -> VendorAdapter:
        url = base_url or httpserver.url_for(vendor.base_path or "/")
        adapter = vendor.adapter(vendor.credentials, base_url=url, clock=lambda: now, **kwargs)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        await adapter.aclose()
