"""An app instance per test module, against the run's real database and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from market_data.settings import get_settings


@pytest.fixture
async def client(md_dsn: str, conn) -> AsyncIterator[AsyncTestClient]:
    """Client of an app on the run's database (data tables emptied by `conn`)."""
    app = create_app(get_settings())
    async with AsyncTestClient(app=app) as c:
        yield c
