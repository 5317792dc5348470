"""Fault 2: Redis stopped (SIGKILL) while sweeps run, then started again.

- Local mode: sweeps go on while Redis is away, deciding on breaker, health and rate-limit
  state of their own process, and say so in their log; when Redis returns they share its
  state again (and say so). Every bar is stored once.
- RLC mode: a run whose plan cannot reach Redis fails with an error naming Redis; its retry
  after Redis returns takes the jobs (the list survived: Redis keeps it in its append-only
  file). Redis dying mid-run does not stop the batches; the run's end (giving the processing
  list back or dropping it) fails until Redis returns and then succeeds. A re-delivery of
  the same jobs stores nothing new: no job is lost, none runs twice to a different result.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from market_data.ingest.rlc import RlcUnavailable, finish_rlc_run, processing_list, source_list
from market_data.ingest.sweep import SweepBatch, plan_sweep, run_sweep_batch
from market_data.jobs import Job
from market_data.policy import LoadedPolicy, parse_policy
from market_data.policy.schema import SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry
from market_data.registry import state as registry_state
from market_data.settings import get_settings
from tests.faults.conftest import NOW, assert_integrity, market_dsn, policy_text

PREFIX = "mdfaults:"
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


def shared_registry(policy, redis_url: str, primary_faults: SyntheticFaults | None = None):
    settings = msgspec.structs.replace(get_settings(), redis_url=redis_url, redis_prefix=PREFIX)
    primary = SyntheticProvider("synthetic", primary_faults, clock=lambda: NOW)
    registry = ProviderRegistry.shared(
        policy,
        settings,
        adapters={
            "synthetic": primary,
            "synthetic_backup": SyntheticProvider("synthetic_backup", clock=lambda: NOW),
        },
        retry_wait=lambda _s: 0.0,
    )
    return registry, primary


def batch_of(symbols: list[str]) -> SweepBatch:
    jobs = [
        Job(
            kind="bars", symbol=s, interval=Interval.M1, start=MON, end=NOW, exchange_mic="XNAS", tier=Tier.T0
        )
        for s in symbols
    ]
    return SweepBatch(tier=Tier.T0, policy_version=1, now=NOW, jobs=jobs)


def messages(lines: list[str], text: str) -> int:
    return sum(1 for line in lines if text in line)


async def test_local_sweeps_go_on_with_process_state_while_redis_is_away(
    pg, redis_server, caplog, monkeypatch
):
    policy = parse_policy(policy_text().replace("failure_threshold = 5", "failure_threshold = 3"))
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    registry, primary = shared_registry(policy, redis_server.url, SyntheticFaults(error_rate=1.0))
    client = aioredis.from_url(redis_server.url)
    caplog.set_level(logging.WARNING)
    try:
        # Redis up: the failing primary's breaker opens in the shared state
        first = await run_sweep_batch(conn, policy, batch_of(["AAPL", "MSFT"]), registry)
        assert first.providers == {"synthetic_backup": 1} and not registry.degraded
        assert b'"open"' in (await client.get(f"{PREFIX}provider:synthetic:breaker") or b"")

        redis_server.kill()
        second = await run_sweep_batch(conn, policy, batch_of(["NVDA", "AMZN"]), registry)
        assert second.failed == {} and second.bars_inserted == 2 * 90
        assert registry.degraded  # decided on this process's own state
        log = [r.getMessage() for r in caplog.records]
        assert messages(log, "Redis is unreachable") == 1, log  # said once, not per call
        assert messages(log, "rate limits fall back to this process only") == 1, log
        # the process's own breaker took over: the failing primary is refused, not retried forever
        assert (await registry.store.breaker("synthetic")).state == "open"

        redis_server.start()  # its append-only file brings the shared breaker back
        monkeypatch.setattr(registry_state, "REDIS_RETRY_SECONDS", 0.0)
        calls = primary.calls
        third = await run_sweep_batch(conn, policy, batch_of(["META", "GOOGL"]), registry)
        assert third.providers == {"synthetic_backup": 1} and third.failed == {}
        assert not registry.degraded
        assert primary.calls == calls  # the shared breaker is open: the primary is not called
        assert messages([r.getMessage() for r in caplog.records], "Redis is back") == 1

        stored = await conn.fetchval("SELECT count(*) FROM bars")
        assert stored == 6 * 90 == first.bars_inserted + second.bars_inserted + third.bars_inserted
    finally:
        await registry.aclose()
        await client.aclose()
        await conn.close()
    await assert_integrity(dsn)


def bars_message(
    symbol: str, start: str = "2026-11-23T15:00:00Z", end: str = "2026-11-23T15:30:00Z"
) -> bytes:
    return json.dumps(
        {"kind": "bars", "symbol": symbol, "interval": "1m", "start": start, "end": end}
    ).encode()


RLC_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL"]


async def run_rlc(conn, loaded: LoadedPolicy, redis_client, run_id: str, registry) -> list:
    batches = await plan_sweep(conn, loaded, Tier.T0, NOW, redis=redis_client, run_id=run_id)
    return [await run_sweep_batch(conn, loaded.policy, b, registry) for b in batches]


async def test_rlc_runs_fail_clearly_without_redis_and_nothing_is_lost_or_changed(pg, redis_server):
    text = policy_text(mode="rlc", rlc_list=f"{PREFIX}rlc:jobs")
    loaded = LoadedPolicy(version=1, policy=parse_policy(text), body=text, source="test")
    policy = loaded.policy
    dsn = market_dsn(pg)
    conn = await asyncpg.connect(dsn)
    client = aioredis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    registry, _ = shared_registry(policy, redis_server.url)
    src = source_list(policy, Tier.T0)
    try:
        await client.rpush(src, *[bars_message(s) for s in RLC_SYMBOLS])

        # the plan of run 1 cannot reach Redis: the task fails, naming it (with the connection
        # it had before the crash, and with a new one as a fresh task process opens)
        redis_server.kill()
        fresh = aioredis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
        for c in (client, fresh):
            with pytest.raises(RlcUnavailable) as failed:
                await plan_sweep(conn, loaded, Tier.T0, NOW, redis=c, run_id="run-1")
            assert f"needs Redis (127.0.0.1:{redis_server.port}), which did not answer" in str(failed.value)
            assert "ConnectionError" in str(failed.value)
        await fresh.aclose()
        redis_server.start()
        assert await client.llen(src) == len(RLC_SYMBOLS)  # nothing was taken, nothing lost

        # its retry takes the jobs; Redis dies while the batches run: they go on without it
        batches = await plan_sweep(conn, loaded, Tier.T0, NOW, redis=client, run_id="run-1")
        assert sorted(j.symbol for b in batches for j in b.jobs) == sorted(RLC_SYMBOLS)
        redis_server.kill()
        results = [await run_sweep_batch(conn, policy, b, registry) for b in batches]
        assert all(r.failed == {} for r in results) and registry.degraded
        # the run's end needs Redis: it fails (Airflow retries the report task) ...
        with pytest.raises(RlcUnavailable, match="ending run run-1"):
            await finish_rlc_run(client, policy, Tier.T0, "run-1", succeeded=True)
        redis_server.start()
        # ... and succeeds once Redis is back: the processing list is dropped, the list is empty
        assert await client.llen(processing_list(policy, Tier.T0, "run-1")) == len(RLC_SYMBOLS)
        await finish_rlc_run(client, policy, Tier.T0, "run-1", succeeded=True)
        assert await client.llen(src) == 0
        assert await client.exists(processing_list(policy, Tier.T0, "run-1")) == 0
        after_one = [
            tuple(r) for r in await conn.fetch("SELECT symbol, ts, close, as_of FROM bars ORDER BY 1, 2")
        ]
        assert len(after_one) == len(RLC_SYMBOLS) * 30

        # run 2 fails after taking re-delivered and new jobs: its messages go back in order ...
        redelivered = [bars_message(s) for s in RLC_SYMBOLS[:3]] + [
            bars_message("AAPL", end="2026-11-23T15:45:00Z")
        ]
        await client.rpush(src, *redelivered)
        await plan_sweep(conn, loaded, Tier.T0, NOW, redis=client, run_id="run-2")
        assert await finish_rlc_run(client, policy, Tier.T0, "run-2", succeeded=False) == len(redelivered)
        assert await client.lrange(src, 0, -1) == redelivered
        # ... and run 3 runs them: the re-delivered ones store nothing new, the new range its bars
        await run_rlc(conn, loaded, client, "run-3", registry)
        await finish_rlc_run(client, policy, Tier.T0, "run-3", succeeded=True)
        rows = [tuple(r) for r in await conn.fetch("SELECT symbol, ts, close, as_of FROM bars ORDER BY 1, 2")]
        assert [r for r in rows if r in after_one] == after_one  # nothing changed, no new version
        assert len(rows) == len(after_one) + 15  # AAPL 15:30-15:45 is new
        assert await client.llen(src) == 0
        assert [k async for k in client.scan_iter(match=f"{PREFIX}rlc:*")] == []
        assert await conn.fetchval("SELECT count(*) FROM rejected_jobs") == 0
    finally:
        await registry.aclose()
        await client.aclose()
        await conn.close()
    await assert_integrity(dsn)
