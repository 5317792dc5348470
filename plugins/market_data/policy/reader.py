"""The one reader of the active policy, for the scheduler, the tasks and the API.

Where the policy comes from, the first source that answers:

1. Postgres: the active row of `policy_versions` (what `/ops/reload` and rollbacks set).
2. The policy file (`include/policy.toml`, counted as version 1) while Postgres holds no
   version yet.
3. `SAFE_DEFAULTS`, when the file cannot be read or is refused.

How far each caller falls back:

- Tasks (`load_active_policy`, `load_policy_version`) and the API (`PolicyReader.get`) work
  on Postgres anyway: an unreachable database is their error, not a reason to guess. Tasks
  read once per run, uncached: a run uses the version active when it starts.
- The scheduler (`PolicyReader.get_blocking`, called by the timetables) must keep planning
  runs while Postgres is away: it falls back to the file and, when that cannot be read
  either, the timetable keeps the cadence its DAG was parsed with (the file's, else the
  safe default).
- DAG files (`parse_time_policy`) touch no network: the file, else `SAFE_DEFAULTS`.

A `PolicyReader` keeps what it read for `ttl` seconds: the API's reader drops its copy at
once when a reload notifies `md_policy` (`listen`); the scheduler's keeps failures too, so
a dead database costs one connect timeout per period, not one per question.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from market_data import db
from market_data.notifications import POLICY_CHANNEL
from market_data.policy.loader import (
    FILE_VERSION,
    LoadedPolicy,
    PolicyError,
    Problem,
    load_policy_file,
    parse_policy,
)
from market_data.policy.schema import Duration, Policy, TierPolicy
from market_data.records import Interval, Tier
from market_data.settings import get_settings

log = logging.getLogger(__name__)


_ACTIVE = "SELECT version, body FROM policy_versions WHERE active"

SAFE_DEFAULTS = Policy(
    description="safe defaults: the policy file could not be read",
    tiers={tier: TierPolicy(intervals=[Interval.M1], bar_cadence=Duration("1m")) for tier in Tier},
    providers={},
)
"""What DAG files are built from when the policy file is unusable: every tier swept for 1m
bars once a minute, no provider (md_backfill then has only its default-pool task), and the
schema's defaults for the rest (backfill every 5 minutes, 3 retries 30 s apart)."""


def _stored(version: int, body: str) -> LoadedPolicy:
    return LoadedPolicy(version=version, policy=parse_policy(body), body=body, source="db")


def parse_time_policy(policy_file: Path | None = None) -> Policy:
    """The policy DAG files are built from: the file, else `SAFE_DEFAULTS` (no network)."""
    path = policy_file or get_settings().policy_file
    try:
        return load_policy_file(path).policy
    except (OSError, PolicyError) as exc:
        log.warning("policy file %s is unusable (%s): DAGs are built from the safe defaults", path, exc)
        return SAFE_DEFAULTS


async def load_active_policy(conn: asyncpg.Connection | asyncpg.Pool, fallback: Path) -> LoadedPolicy:
    """The active policy version, or the policy file when Postgres holds none yet."""
    row = await conn.fetchrow(_ACTIVE)
    return _stored(row["version"], row["body"]) if row is not None else load_policy_file(fallback)


async def load_policy_version(conn: asyncpg.Connection, version: int, fallback: Path) -> LoadedPolicy:
    """A specific stored version (what a DAG run recorded at its start).

    Falls back to the policy file for version 1 when Postgres holds no versions yet.
    """
    row = await conn.fetchrow("SELECT version, body FROM policy_versions WHERE version = $1", version)
    if row is not None:
        return _stored(row["version"], row["body"])
    if version == FILE_VERSION and not await conn.fetchval("SELECT count(*) FROM policy_versions"):
        return load_policy_file(fallback)
    raise PolicyError([Problem("version", f"policy version {version} is not stored")])


class PolicyReader:
    """The active policy for one process role, kept `ttl` seconds (see the module docstring).

    One instance per role: the API's (async, `get`) and the scheduler's (blocking,
    `get_blocking`) fall back differently, so they never share a cached copy.
    """

    def __init__(self, policy_file: Path | None = None, *, ttl: float) -> None:
        self._policy_file = policy_file
        self.ttl = ttl
        self._kept: tuple[float, LoadedPolicy | None] | None = None
        self._generation = 0
        self._async_lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self._listener: asyncpg.Connection | None = None

    @property
    def policy_file(self) -> Path:
        """The file given, else the settings' (read each time: tests change the environment)."""
        return self._policy_file or get_settings().policy_file

    def invalidate(self, *_: object) -> None:
        """Forget the kept copy; the next read goes to Postgres. Also a `md_policy` listener."""
        with self._thread_lock:
            self._kept = None
            self._generation += 1

    def _fresh(self) -> tuple[LoadedPolicy | None] | None:
        kept = self._kept
        if kept is not None and time.monotonic() - kept[0] < self.ttl:
            return (kept[1],)
        return None

    def _keep(self, loaded: LoadedPolicy | None, generation: int) -> None:
        with self._thread_lock:
            if generation == self._generation:  # no reload was announced while reading
                self._kept = (time.monotonic(), loaded)

    async def get(self, conn: asyncpg.Pool | asyncpg.Connection) -> LoadedPolicy:
        """The active version (the file while Postgres holds none); Postgres errors propagate."""
        hit = self._fresh()
        if hit is not None and hit[0] is not None:
            return hit[0]
        async with self._async_lock:  # one read for every request waiting on an expired copy
            hit = self._fresh()
            if hit is not None and hit[0] is not None:
                return hit[0]
            generation = self._generation
            loaded = await load_active_policy(conn, self.policy_file)
            self._keep(loaded, generation)
            return loaded

    def get_blocking(self, dsn: Callable[[], str]) -> LoadedPolicy | None:
        """For callers that cannot await (timetables): Postgres, else the policy file.

        None when neither can be read; never raises, every fallback is logged. `dsn` is
        called only when the kept copy is stale.
        """
        with self._thread_lock:
            hit = self._fresh()
            generation = self._generation
        if hit is not None:
            return hit[0]
        loaded = self._read_blocking(dsn)
        self._keep(loaded, generation)
        return loaded

    def _read_blocking(self, dsn: Callable[[], str]) -> LoadedPolicy | None:
        try:
            with db.connect_blocking(dsn()) as conn, conn.cursor() as cur:
                cur.execute(_ACTIVE)
                row = cur.fetchone()
            if row is not None:
                return _stored(row[0], row[1])
        except Exception as exc:  # the scheduler keeps planning, whatever went wrong
            log.warning("cannot read the active policy from Postgres (%s); using the policy file", exc)
        try:
            return load_policy_file(self.policy_file)
        except (OSError, PolicyError) as exc:
            log.warning("cannot read the policy file either (%s); keeping the parsed cadences", exc)
            return None

    async def listen(self, dsn: str) -> None:
        """Forget the kept copy on every `md_policy` notification (best effort: `ttl` covers a gap)."""
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(POLICY_CHANNEL, self.invalidate)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("not listening for policy reloads (%s); relying on the %ss cache", exc, self.ttl)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
