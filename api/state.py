"""Connections the app holds for its lifetime (asyncpg pool, Redis), opened in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.di import NamedDependency

from api.replica import CONNECT_TIMEOUT, Reads, ReplicaMonitor
from api.stocks.latest import LatestValues
from market_data.airflow_rest import AirflowRest
from market_data.policy import PolicyReader
from market_data.policy.validation import load_known_pools
from market_data.settings import Settings


async def keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is, without asyncpg's reset query.

    asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: one more round trip, and four statements for Postgres, after every
    query of every request (a /price read is two queries). The API's pooled connections hold
    no session state to undo: statements are bound queries and transactions, `SET LOCAL` and
    advisory locks are transaction-scoped, and LISTEN has connections of its own (the live
    feed, the policy reader). asyncpg still rolls back a transaction left open before calling
    this, so nothing of one request leaks into the next. Code that sets session state on a
    pooled connection (`SET`, `LISTEN`, `pg_advisory_lock`) must undo it itself.
    """


POOL_OPTIONS: dict[str, Any] = {
    # min_size=0: the API starts (and /health says what is down) even while Postgres is away
    "min_size": 0,
    "max_size": 16,
    "command_timeout": 30,
    "reset": keep_session,
}
"""How the API's asyncpg pool is opened (tests/benchmarks/baseline_app.py opens its own alike)."""


POLICY_TTL_SECONDS = 5.0
"""How long the API keeps the active policy; a reload's `md_policy` notification drops it at once,
the TTL covers a missed one (the listener reconnecting)."""


class AppResources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.read_pool: asyncpg.Pool | None = None
        """The hot standby's pool (DATABASE_READ_URL), or None."""
        self.replica = ReplicaMonitor(settings.database_read_max_lag) if settings.database_read_url else None
        self.reads = Reads(lambda: self.db, lambda: self.read_pool, self.replica)
        """Where standby-tolerant reads go (`api/replica.py`): `await resources.reads.run(read)`."""
        self.latest = LatestValues(lambda: self.db)
        """The latest quote and bars per symbol (`api/stocks/latest.py`), kept current by the live feed."""
        self.redis: aioredis.Redis | None = None
        self.policy = PolicyReader(settings.policy_file, ttl=POLICY_TTL_SECONDS)
        self.known_pools = load_known_pools(settings.include_dir)
        self.airflow: AirflowRest | None = None
        """Airflow's REST API while the app runs (None when MD_AIRFLOW_API_URL is not set)."""

    @property
    def db(self) -> asyncpg.Pool:
        """The primary: writes, LISTEN, and the reads that must see the newest write."""
        if self.pool is None:
            raise RuntimeError("database pool is not open")
        return self.pool


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    res: AppResources = app.state.resources
    res.pool = await asyncpg.create_pool(res.settings.database_url, **POOL_OPTIONS)
    if res.settings.database_read_url and res.replica is not None:
        # opens no connection yet (min_size 0): a standby that is down does not stop the start
        res.read_pool = await asyncpg.create_pool(
            res.settings.database_read_url, **POOL_OPTIONS, timeout=CONNECT_TIMEOUT
        )
        res.replica.start(res.pool, res.read_pool)
    res.redis = aioredis.from_url(res.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    await res.policy.listen(res.settings.database_url)
    res.airflow = AirflowRest.from_settings(res.settings)
    try:
        yield
    finally:
        await res.policy.close()
        if res.airflow is not None:
            await res.airflow.aclose()
            res.airflow = None
        await res.redis.aclose()
        if res.replica is not None:
            await res.replica.stop()
        if res.read_pool is not None:
            await res.read_pool.close()
        await res.pool.close()


Resources = NamedDependency[AppResources]
"""Handler parameter type: `resources: Resources` receives the app's AppResources."""
