"""The read replica's lag from WAL positions, where reads go, and its settings (no servers)."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from api.replica import Reads, ReplicaMonitor, lag_from_samples
from market_data.settings import Settings

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def samples(*pairs: tuple[float, int]) -> deque[tuple[datetime, int]]:
    return deque((T0 + timedelta(seconds=s), lsn) for s, lsn in pairs)


def test_a_standby_at_the_newest_position_is_not_behind() -> None:
    assert lag_from_samples(samples((0, 100), (1, 200), (2, 300)), 300) == (T0 + timedelta(seconds=2), 0.0)


def test_an_idle_primary_does_not_make_a_caught_up_standby_look_behind() -> None:
    # the primary wrote nothing for a minute: its position did not move, the standby has it
    idle = samples(*((s, 500) for s in range(60)))
    assert lag_from_samples(idle, 500) == (T0 + timedelta(seconds=59), 0.0)


def test_the_lag_is_the_age_of_the_newest_position_the_standby_has_reached() -> None:
    s = samples((0, 100), (1, 200), (2, 300), (3, 400))
    assert lag_from_samples(s, 250) == (T0 + timedelta(seconds=1), 2.0)


def test_a_standby_behind_every_sample_is_behind_by_at_least_their_span() -> None:
    s = samples((0, 100), (5, 200))
    assert lag_from_samples(s, 50) == (None, 5.0)


class FakePool:
    """Stands for an asyncpg pool in routing decisions (no query is run on it)."""

    def __init__(self, name: str) -> None:
        self.name = name


def reads_with(state: str, caught_up_to: datetime | None) -> tuple[Reads, ReplicaMonitor]:
    monitor = ReplicaMonitor(5.0)
    monitor._set(state, caught_up_to=caught_up_to)  # type: ignore[arg-type]
    primary, standby = FakePool("primary"), FakePool("standby")
    return Reads(lambda: primary, lambda: standby, monitor), monitor  # type: ignore[arg-type,return-value]


async def where(reads: Reads, as_of: datetime | None = None) -> str:
    async def read(pool: FakePool) -> str:
        return pool.name

    return await reads.run(read, as_of=as_of)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [("ok", "standby"), ("primary_unreachable", "standby"), ("behind", "primary"), ("down", "primary")],
)
def test_reads_go_to_the_standby_only_while_it_serves(state: str, expected: str) -> None:
    reads, _ = reads_with(state, T0)
    assert asyncio.run(where(reads)) == expected


def test_a_read_pinned_after_what_the_standby_holds_goes_to_the_primary() -> None:
    reads, _ = reads_with("ok", T0)
    assert asyncio.run(where(reads, T0)) == "standby"
    assert asyncio.run(where(reads, T0 - timedelta(days=1))) == "standby"
    assert asyncio.run(where(reads, T0 + timedelta(microseconds=1))) == "primary"


def test_reads_without_as_of_are_pinned_where_the_standby_is_complete() -> None:
    reads, monitor = reads_with("ok", T0)
    now = T0 + timedelta(seconds=3)
    assert reads.newest_complete(now) == T0
    monitor._set("down")
    assert reads.newest_complete(now) == now


def test_a_failing_standby_read_runs_again_on_the_primary_and_the_standby_is_left_alone() -> None:
    reads, monitor = reads_with("ok", T0)

    async def read(pool: FakePool) -> str:
        if pool.name == "standby":
            raise ConnectionResetError("the standby went away")
        return pool.name

    assert asyncio.run(reads.run(read)) == "primary"  # type: ignore[arg-type]
    assert monitor.status.state == "down" and "ConnectionResetError" in (monitor.status.error or "")
    assert asyncio.run(where(reads)) == "primary"


def test_a_pooled_standby_connection_whose_server_went_away_runs_the_read_on_the_primary() -> None:
    # asyncpg reads the goodbye of a terminated backend in the middle of the next query and
    # raises its catch-all client error, not a connection error (seen once in CI as a 500)
    reads, monitor = reads_with("ok", T0)

    async def read(pool: FakePool) -> str:
        if pool.name == "standby":
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        return pool.name

    assert asyncio.run(reads.run(read)) == "primary"  # type: ignore[arg-type]
    assert monitor.status.state == "down"


def test_another_client_error_of_asyncpg_is_not_taken_for_a_lost_standby() -> None:
    reads, monitor = reads_with("ok", T0)

    async def read(pool: FakePool) -> str:
        raise asyncpg.exceptions.InternalClientError("a bug")

    with pytest.raises(asyncpg.exceptions.InternalClientError):
        asyncio.run(reads.run(read))  # type: ignore[arg-type]
    assert monitor.status.state == "ok"


def test_an_error_of_the_read_itself_is_not_retried() -> None:
    reads, monitor = reads_with("ok", T0)
    calls: list[str] = []

    async def read(pool: FakePool) -> str:
        calls.append(pool.name)
        raise ValueError("bad parameter")

    with pytest.raises(ValueError):
        asyncio.run(reads.run(read))  # type: ignore[arg-type]
    assert calls == ["standby"] and monitor.status.state == "ok"


def test_without_a_read_url_everything_reads_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    assert Settings.from_env().database_read_url is None
    primary = FakePool("primary")
    reads = Reads(lambda: primary)  # type: ignore[arg-type,return-value]
    assert asyncio.run(where(reads)) == "primary"


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_max_lag_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("DATABASE_READ_MAX_LAG", raw)
    with pytest.raises(ValueError, match="DATABASE_READ_MAX_LAG"):
        Settings.from_env()


def test_the_max_lag_is_read_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://postgres@127.0.0.1:5433/market_data")
    monkeypatch.setenv("DATABASE_READ_MAX_LAG", "2.5")
    s = Settings.from_env()
    assert s.database_read_url.endswith(":5433/market_data") and s.database_read_max_lag == 2.5  # type: ignore[union-attr]
