"""Reads from a Postgres hot standby (`DATABASE_READ_URL`), and what stays on the primary.

What reads where (the README's "Read replica" has the same table):

- **The standby, while it serves:** the market-data reads of `/stocks/*` (price with `as_of`,
  history, intraday, versions, bars, CSV; price and snapshots while the latest-value cache of
  `api/stocks/latest.py` cannot answer) with their symbol look-ups, and `/stats/slo`'s
  samples and `/stats/cadence`'s symbol counts. These tolerate data a few seconds old.
- **The primary, always:** everything under `/ops/*` (the writes, the audit, and the reads an
  operator makes right after a write: policy versions, the DLQ, cursors); the active policy
  (a reload is announced by the primary's NOTIFY: re-reading a standby that has not replayed
  it yet would cache the old version again); the WebSocket snapshot (the live updates after it
  come from the primary's NOTIFY, so a snapshot from a lagging standby could miss a bar that
  was notified before the client subscribed); `/health`, `/ready`'s sweep age and `/metrics`'
  queue gauges (the operator's view of now); LISTEN itself (a standby cannot LISTEN).

The standby serves while it answers as a standby (`pg_is_in_recovery()`) at most
`DATABASE_READ_MAX_LAG` seconds behind. Lag is measured by WAL position, not by replay
timestamps: every second each API process reads the primary's `pg_current_wal_lsn()` with its
clock, keeps a minute or more of these samples, and reads the standby's
`pg_last_wal_replay_lsn()`. The standby has replayed everything the primary had committed at
the newest sample whose position it has reached: that instant is `caught_up_to`, and the lag
is how far it trails the newest sample (0 when the standby has reached it). The alternative,
`now() - pg_last_xact_replay_timestamp()`, grows while the primary is idle although nothing
is missing, and `pg_stat_replication.replay_lag` needs monitoring rights on the primary and
the standby's name; positions need neither and work through any chain of standbys. The lag is
known to the check interval (1 s).

Point-in-time reads stay exact: a read pinned at `as_of` goes to the standby only when
`as_of <= caught_up_to` (it has every version the primary had then); a history read without
`as_of` is pinned at `caught_up_to` when the standby serves it (and says so in its `as_of`).

When the standby fails (down, restarting, a query cancelled by a conflict with recovery) the
read is run again on the primary and the standby is left alone until the next check finds it
healthy: the API keeps answering from the primary, never a 503 for the standby. While the
primary cannot be reached the standby keeps serving (lag unknown, `caught_up_to` unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, TypeVar

import asyncpg

from api.schemas import ResponseModel
from market_data.db import is_broken_connection
from market_data.records import utcnow

log = logging.getLogger("api.replica")

T = TypeVar("T")

CHECK_SECONDS = 1.0
"""How often each API process measures the standby."""
CHECK_TIMEOUT = 2.0
"""A check that takes longer than this counts as the standby (or primary) not answering."""
CONNECT_TIMEOUT = 2.0
"""Connect timeout of the standby's pool: a dead standby costs a read this much at most."""
MIN_HISTORY_SECONDS = 120.0

PRIMARY_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8 AS lsn, clock_timestamp() AS at"
STANDBY_POSITION = """
SELECT pg_is_in_recovery() AS standby, pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::int8 AS replayed"""

REPLICA_FAILURES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the pooled connection died with the server
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # out of connections
    asyncpg.exceptions.SerializationError,  # 40001: cancelled by a conflict with recovery
)
"""What a read on the standby may fail with that the primary would not: run it there again (and
asyncpg's client error of a pooled connection whose standby went away: `is_broken_connection`)."""

ReplicaState = Literal["unknown", "ok", "behind", "down", "not_standby", "primary_unreachable"]


class ReplicaStatus(ResponseModel, kw_only=True):
    """The standby as this API process last measured it."""

    state: ReplicaState
    """ok, behind (more than `max_lag_seconds`), down, not_standby (answers but is not in
    recovery), primary_unreachable (the standby serves, lag unknown), unknown (not checked yet)."""
    serving_reads: bool
    """Whether the standby's reads go to it now (else to the primary)."""
    lag_seconds: float | None = None
    """How far the standby trails the primary (to the check interval; None when unknown)."""
    lag_bytes: int | None = None
    """WAL bytes the primary has written that the standby has not replayed."""
    max_lag_seconds: float
    caught_up_to: datetime | None = None
    """The standby holds everything the primary had committed at this instant (primary's clock)."""
    checked_at: datetime | None = None
    error: str | None = None


def lag_from_samples(samples: deque[tuple[datetime, int]], replayed: int) -> tuple[datetime | None, float]:
    """(caught_up_to, lag seconds) of a standby at WAL position `replayed`.

    `samples` are the primary's (clock, position) pairs, oldest first, the newest taken just
    before the standby was read. Without a reached sample the standby is behind all of them:
    the lag is at least their span.
    """
    newest_at = samples[-1][0]
    for at, position in reversed(samples):
        if position <= replayed:
            return at, (newest_at - at).total_seconds()
    return None, (newest_at - samples[0][0]).total_seconds()


class ReplicaMonitor:
    """Measures one standby against the primary every CHECK_SECONDS (one per API process)."""

    def __init__(self, max_lag: float, *, check_seconds: float = CHECK_SECONDS) -> None:
        self.max_lag = max_lag
        self.check_seconds = check_seconds
        self.history_seconds = max(MIN_HISTORY_SECONDS, 4 * max_lag)
        self._samples: deque[tuple[datetime, int]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.status = ReplicaStatus(state="unknown", serving_reads=False, max_lag_seconds=max_lag)

    @property
    def serving(self) -> bool:
        return self.status.serving_reads

    def start(self, primary: asyncpg.Pool, standby: asyncpg.Pool) -> None:
        self._task = asyncio.create_task(self._run(primary, standby), name="replica-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, primary: asyncpg.Pool, standby: asyncpg.Pool) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.check(primary, standby)
            except Exception:  # a bug here must not stop the checks
                log.exception("replica check failed")
            await asyncio.sleep(max(0.05, self.check_seconds - (time.monotonic() - started)))

    async def check(self, primary: asyncpg.Pool, standby: asyncpg.Pool) -> ReplicaStatus:
        """One measurement: the primary's position first, then the standby's."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                head = await primary.fetchrow(PRIMARY_POSITION)
        except Exception as exc:
            head, primary_error = None, f"{type(exc).__name__}: {exc}"[:200]
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                row = await standby.fetchrow(STANDBY_POSITION)
        except Exception as exc:
            return self._set("down", error=f"{type(exc).__name__}: {exc}"[:200])
        if not row["standby"]:
            return self._set("not_standby", error="pg_is_in_recovery() is false: not a hot standby")
        replayed = row["replayed"]
        if head is None:
            return self._set("primary_unreachable", error=f"primary: {primary_error}", keep_position=True)
        self._samples.append((head["at"], int(head["lsn"])))
        while (head["at"] - self._samples[0][0]).total_seconds() > self.history_seconds:
            self._samples.popleft()
        if replayed is None:  # nothing replayed yet (starting up)
            return self._set("behind", error="the standby has not replayed any WAL yet")
        caught_up_to, lag = lag_from_samples(self._samples, int(replayed))
        state: ReplicaState = "ok" if caught_up_to is not None and lag <= self.max_lag else "behind"
        return self._set(
            state,
            lag_seconds=round(lag, 3),
            lag_bytes=max(0, int(head["lsn"]) - int(replayed)),
            caught_up_to=caught_up_to,
        )

    def failed(self, exc: BaseException) -> None:
        """A read on the standby failed: serve from the primary until a check finds it healthy."""
        self._set("down", error=f"{type(exc).__name__}: {exc}"[:200], keep_position=True)

    def _set(
        self,
        state: ReplicaState,
        *,
        error: str | None = None,
        lag_seconds: float | None = None,
        lag_bytes: int | None = None,
        caught_up_to: datetime | None = None,
        keep_position: bool = False,
    ) -> ReplicaStatus:
        before = self.status
        if keep_position:
            lag_bytes, caught_up_to = before.lag_bytes, before.caught_up_to
        self.status = ReplicaStatus(
            state=state,
            serving_reads=state in ("ok", "primary_unreachable"),
            lag_seconds=lag_seconds,
            lag_bytes=lag_bytes,
            max_lag_seconds=self.max_lag,
            caught_up_to=caught_up_to,
            checked_at=utcnow(),
            error=error,
        )
        if state != before.state:
            level = logging.INFO if self.status.serving_reads else logging.WARNING
            where = "the standby" if self.status.serving_reads else "the primary"
            log.log(
                level, "read replica: %s -> %s (%s); reads go to %s", before.state, state, error or "", where
            )
        return self.status


class Reads:
    """Where the API's standby-tolerant reads go (module docstring): `run(read)`.

    Without a standby every read runs on the primary, with no other cost than the call.
    """

    def __init__(
        self,
        primary: Callable[[], asyncpg.Pool],
        standby: Callable[[], asyncpg.Pool | None] = lambda: None,
        monitor: ReplicaMonitor | None = None,
    ) -> None:
        self._primary = primary
        self._standby = standby
        self.monitor = monitor

    def newest_complete(self, now: datetime) -> datetime:
        """The instant a read without `as_of` is pinned at: `now`, or while the standby serves,
        the newest instant it is known to hold everything of (`caught_up_to`)."""
        m = self.monitor
        if m is None or not m.serving or m.status.caught_up_to is None:
            return now
        return min(now, m.status.caught_up_to)

    def _standby_for(self, as_of: datetime | None) -> asyncpg.Pool | None:
        m = self.monitor
        if m is None or not m.serving:
            return None
        if as_of is not None:
            caught_up_to = m.status.caught_up_to
            if caught_up_to is None or as_of > caught_up_to:
                return None  # versions the standby may not hold yet
        return self._standby()

    async def run(self, read: Callable[[asyncpg.Pool], Awaitable[T]], *, as_of: datetime | None = None) -> T:
        """`read(pool)` on the standby when it serves (and holds everything up to `as_of`), else
        on the primary; again on the primary when the standby fails it."""
        standby = self._standby_for(as_of)
        if standby is None:
            return await read(self._primary())
        try:
            return await read(standby)
        except Exception as exc:
            if not isinstance(exc, REPLICA_FAILURES) and not is_broken_connection(exc):
                raise
            assert self.monitor is not None
            self.monitor.failed(exc)
            log.warning("read replica failed a read (%s: %s); reading the primary", type(exc).__name__, exc)
            return await read(self._primary())
