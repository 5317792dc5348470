"""The registry with real Redis: one limit across processes, failover, breaker lifecycle, fallback."""

from __future__ import annotations

import asyncio
import bisect
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from market_data.ingest.sweep import SweepBatch, run_sweep_batch
from market_data.jobs import Job
from market_data.policy import parse_policy
from market_data.policy.schema import SyntheticFaults
from market_data.providers.base import BarRequest
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.settings import get_settings
from tests.conftest import REDIS_PREFIX

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def test_two_processes_never_exceed_the_limit_in_any_window(tmp_path: Path) -> None:
    """600 calls/minute scaled to a 2 s window (20 calls); two processes of 20 workers for 10 s."""
    prefix = f"{REDIS_PREFIX}limiter:"
    outs = [tmp_path / f"calls{i}.txt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "hammer_registry.py"), prefix, "600", "2", "10", str(o)],
            env=os.environ.copy(),
        )
        for o in outs
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    times = [float(x) for o in outs for x in o.read_text().split()]
    per_process = [len(o.read_text().split()) for o in outs]
    worst = max_in_any_window(times, 2.0)
    assert worst <= 20, f"limiter: {len(times)} calls {per_process}, max in any 2 s window {worst} (limit 20)"
    assert min(per_process) > 10, "one process was starved"
    # 20 calls per 3 s (the 2 s window plus the 1 s safety margin) over 10 s: the limit is used
    assert len(times) >= 60


def two_provider_policy(cooldown: str = "1s", threshold: int = 3):
    return parse_policy(
        '[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\nquotes = true\n'
        '[providers.synth_a]\nkind = "synthetic"\npriority = 1\n'
        '[providers.synth_b]\nkind = "synthetic"\npriority = 2\n'
        f'[breaker]\nfailure_threshold = {threshold}\ncooldown = "{cooldown}"\nmax_cooldown = "1m"\n'
    )


class Clock:
    """The registry's clock, moved by the test: a breaker's cooldown passes without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def registry_for(
    policy, a: SyntheticProvider, b: SyntheticProvider, prefix: str, clock: Clock | None = None
) -> ProviderRegistry:
    settings = msgspec.structs.replace(get_settings(), redis_prefix=prefix)
    return ProviderRegistry.shared(
        policy,
        settings,
        adapters={"synth_a": a, "synth_b": b},
        retry_wait=lambda _s: 0.01,
        clock=clock or time.time,
    )


async def wait_for_breaker(registry: ProviderRegistry, name: str, state: str) -> None:
    deadline = time.monotonic() + 5
    while (await registry.store.breaker(name)).state != state:
        assert time.monotonic() < deadline, f"{name}'s breaker never became {state}"
        await asyncio.sleep(0.01)


async def test_outage_of_a_fails_over_to_b_within_the_run_and_a_recovers_after_cooldown(conn) -> None:
    prefix = f"{REDIS_PREFIX}failover:"
    down = SyntheticFaults(error_rate=1.0)
    a = SyntheticProvider("synth_a", down, clock=lambda: NOW)
    b = SyntheticProvider("synth_b", clock=lambda: NOW)
    policy = two_provider_policy()
    clock = Clock()
    registry = registry_for(policy, a, b, prefix, clock)
    jobs = [
        Job(
            kind="bars",
            symbol=s,
            interval=Interval.M1,
            start=datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
            end=NOW,
            exchange_mic="XNYS",
            tier=Tier.T0,
        )
        for s in ("AAPL", "MSFT", "NVDA")
    ]
    batch = SweepBatch(tier=Tier.T0, policy_version=1, now=NOW, jobs=jobs)
    started = time.monotonic()
    result = await run_sweep_batch(conn, policy, batch, registry)
    failover_seconds = time.monotonic() - started
    assert result.providers == {"synth_b": 1} and result.failed == {}, (
        f"failover: batch served by {result.providers} in {failover_seconds:.3f}s, failed {result.failed}"
    )
    assert result.bars_inserted == 3 * 30
    assert await conn.fetchval("SELECT count(DISTINCT provider) FROM bars") == 1
    state = await registry.store.breaker("synth_a")
    assert state.state == "open"  # 3 consecutive failures (1 try + 2 retries)
    # while open, A is not called at all
    calls_before = a.calls
    await registry.fetch_quotes(["AAPL"], "XNYS")
    assert a.calls == calls_before
    # A recovers; after the cooldown exactly one probe goes to A and closes the breaker
    a.faults = SyntheticFaults()
    clock.advance(policy.breaker.cooldown.seconds)
    out = await registry.fetch_quotes(["AAPL"], "XNYS")
    assert out.provider == "synth_a" and a.calls == calls_before + 1
    assert (await registry.store.breaker("synth_a")).state == "closed"
    await registry.aclose()


async def test_a_second_registry_sees_the_same_breaker_and_history() -> None:
    """Every process shares state through Redis: a breaker opened here is open there."""
    prefix = f"{REDIS_PREFIX}shared:"
    policy = two_provider_policy(cooldown="1m")
    a = SyntheticProvider("synth_a", SyntheticFaults(error_rate=1.0), clock=lambda: NOW)
    first = registry_for(policy, a, SyntheticProvider("synth_b", clock=lambda: NOW), prefix)
    await first.fetch_quotes(["AAPL"], "XNYS")
    second_a = SyntheticProvider("synth_a", clock=lambda: NOW)  # healthy, but the breaker is shared
    second = registry_for(policy, second_a, SyntheticProvider("synth_b", clock=lambda: NOW), prefix)
    out = await second.fetch_quotes(["AAPL"], "XNYS")
    assert out.provider == "synth_b" and second_a.calls == 0
    statuses = {s.name: s for s in await second.statuses()}
    assert statuses["synth_a"].breaker == "open" and statuses["synth_a"].health.error_rate == 1.0
    assert statuses["synth_a"].score < statuses["synth_b"].score
    assert len(statuses["synth_a"].samples) == 3
    await first.aclose()
    await second.aclose()


async def test_every_provider_failing_raises_with_each_reason() -> None:
    policy = two_provider_policy()
    a = SyntheticProvider("synth_a", SyntheticFaults(error_rate=1.0), clock=lambda: NOW)
    b = SyntheticProvider("synth_b", SyntheticFaults(rate_429=1.0, retry_after_seconds=0), clock=lambda: NOW)
    registry = registry_for(policy, a, b, f"{REDIS_PREFIX}allfail:")
    req = BarRequest(symbols=("AAPL",), exchange_mic="XNYS", interval=Interval.M1, start=NOW, end=NOW)
    with pytest.raises(AllProvidersFailed) as exc:
        await registry.fetch_bars(req)
    assert set(exc.value.errors) == {"synth_a", "synth_b"}
    assert "RateLimitedError" in exc.value.errors["synth_b"]
    await registry.aclose()


@pytest.fixture
def statsd(monkeypatch):
    from market_data.metrics import set_task_metrics
    from tests.integration.statsd_packets import StatsdReceiver

    receiver = StatsdReceiver()
    monkeypatch.setenv("STATSD_PORT", str(receiver.port))
    set_task_metrics(None)
    yield receiver
    set_task_metrics(None)
    receiver.close()


async def test_redis_down_falls_back_to_process_state_and_says_so(caplog, statsd) -> None:
    settings = msgspec.structs.replace(get_settings(), redis_url="redis://127.0.0.1:1/0")
    policy = two_provider_policy()
    a = SyntheticProvider("synth_a", SyntheticFaults(error_rate=1.0), clock=lambda: NOW)
    registry = ProviderRegistry.shared(
        policy,
        settings,
        adapters={"synth_a": a, "synth_b": SyntheticProvider("synth_b", clock=lambda: NOW)},
        retry_wait=lambda _s: 0.01,
    )
    with caplog.at_level("WARNING"):
        out = await registry.fetch_quotes(["AAPL"], "XNYS")
    assert out.provider == "synth_b"
    assert registry.degraded
    assert any("per-process" in r.message or "this process only" in r.message for r in caplog.records)
    lines = statsd.receive(expected_lines=1, timeout=3)
    shared = {ln.name: ln.value for ln in lines if ln.name.startswith("market_data.registry_shared_state.")}
    assert shared == {
        "market_data.registry_shared_state.health": 0.0,
        "market_data.registry_shared_state.rate_limits": 0.0,
    }
    assert (await registry.store.breaker("synth_a")).state == "open"  # decided on in-process state
    await registry.aclose()


async def test_concurrent_callers_wait_for_the_probe_instead_of_failing() -> None:
    """After an outage, many concurrent calls: one probes, the others wait for its outcome."""
    prefix = f"{REDIS_PREFIX}probe:"
    policy = two_provider_policy(cooldown="1s")
    clock = Clock()
    a = SyntheticProvider("synth_a", SyntheticFaults(error_rate=1.0, latency_ms=200), clock=lambda: NOW)
    registry = registry_for(policy, a, SyntheticProvider("synth_b", clock=lambda: NOW), prefix, clock)
    with pytest.raises(AllProvidersFailed):
        await registry.fetch_quotes(["AAPL"], "XNYS", preferred=["synth_a"])
    assert (await registry.store.breaker("synth_a")).state == "open"
    a.faults = SyntheticFaults(latency_ms=200)  # recovered
    clock.advance(policy.breaker.cooldown.seconds)
    outs = await asyncio.gather(
        *(registry.fetch_quotes([s], "XNYS", preferred=["synth_a"]) for s in ("AAPL", "MSFT", "NVDA", "AMZN"))
    )
    assert [o.provider for o in outs] == ["synth_a"] * 4
    await registry.aclose()


async def test_a_cancelled_probe_does_not_leave_the_breaker_half_open() -> None:
    prefix = f"{REDIS_PREFIX}cancel:"
    policy = two_provider_policy(cooldown="1s")
    clock = Clock()
    a = SyntheticProvider("synth_a", SyntheticFaults(error_rate=1.0), clock=lambda: NOW)
    registry = registry_for(policy, a, SyntheticProvider("synth_b", clock=lambda: NOW), prefix, clock)
    with pytest.raises(AllProvidersFailed):
        await registry.fetch_quotes(["AAPL"], "XNYS", preferred=["synth_a"])
    a.faults = SyntheticFaults(latency_ms=5000)  # the probe will hang
    clock.advance(policy.breaker.cooldown.seconds)
    probe = asyncio.create_task(registry.fetch_quotes(["AAPL"], "XNYS", preferred=["synth_a"]))
    await wait_for_breaker(registry, "synth_a", "half_open")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    a.faults = SyntheticFaults()
    out = await registry.fetch_quotes(["AAPL"], "XNYS", preferred=["synth_a"])  # probes at once
    assert out.provider == "synth_a" and (await registry.store.breaker("synth_a")).state == "closed"
    await registry.aclose()
