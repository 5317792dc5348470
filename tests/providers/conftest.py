"""Provider adapter tests talk only to pytest-httpserver on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

_LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(autouse=True)
def _local_http_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test whose adapter tries to reach a host other than the local test server."""
    send = httpx.AsyncClient.send

    async def guarded_send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> Any:
        assert request.url.host in _LOCAL_HOSTS, f"live network call attempted: {request.url.host}"
        return await send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", guarded_send)
    yield
