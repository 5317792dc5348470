"""Fault 4: provider outage, a 429 storm and slow responses on the synthetic providers.

Three synthetic providers share their health, breakers and rate limits through the private
Redis (a 2-second window stands for the minute, so the limits bind within the test):

- during the faults `alpha` is down (503 on every call), `beta` answers every call with 429
  (Retry-After honoured), `gamma` is slow and late (bars show up only after a while): a T0
  sweep fails over to gamma for every request, fails nothing, and queues the missing bars
  as backfill jobs;
- after recovery the breakers let a probe through, the backfill drains the queue, and no
  gap is left;
- every provider's calls are timed where the provider sees them: none ever sees more than
  its limit in any window.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import defaultdict
from datetime import timedelta

import asyncpg
import msgspec

from market_data.backfill.claim import claim_jobs, plan_batches
from market_data.backfill.execute import run_backfill_batch
from market_data.gaps import Window, find_gaps
from market_data.ingest.sweep import plan_sweep, run_sweep_batch
from market_data.policy import LoadedPolicy, parse_policy
from market_data.policy.schema import Duration, OutageWindow, SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Tier
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings
from tests.faults.conftest import DEFAULT_POLICY, NOW, assert_integrity, market_dsn

log = logging.getLogger(__name__)

WINDOW = 2
"""Seconds standing for the limiter's minute."""
CALLS_PER_MINUTE = 300
LIMIT = CALLS_PER_MINUTE * WINDOW // 60  # calls per WINDOW seconds
NAMES = ("alpha", "beta", "gamma")


def policy_text() -> str:
    head = DEFAULT_POLICY[: DEFAULT_POLICY.index("[providers.synthetic]")]
    tail = DEFAULT_POLICY[DEFAULT_POLICY.index("[breaker]") :]
    providers = "".join(
        f'[providers.{name}]\nkind = "synthetic"\npriority = {i + 1}\ncalls_per_minute = {CALLS_PER_MINUTE}\n'
        f'pool = "provider_synthetic"\nlatency_target_ms = 250\n\n'
        for i, name in enumerate(NAMES)
    )
    text = head.replace("batch_size = 250", 'batch_size = 250\nproviders = ["alpha", "beta", "gamma"]', 1)
    tail = tail.replace("failure_threshold = 5", "failure_threshold = 3")
    return text + providers + tail


TEXT = policy_text()
POLICY = parse_policy(TEXT)


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def test_outage_429_storm_and_slow_provider_fail_over_within_limits_and_gaps_drain(pg, redis_server):
    dsn = market_dsn(pg)
    clock = [NOW]
    calls: dict[str, list[float]] = defaultdict(list)

    def seen(name: str, _kind: str) -> None:
        calls[name].append(time.monotonic())

    faults = {
        "alpha": SyntheticFaults(
            symbols_per_request=1,
            outages=[OutageWindow(start=NOW - timedelta(hours=1), end=NOW + timedelta(minutes=30))],
        ),
        "beta": SyntheticFaults(symbols_per_request=1, rate_429=1.0, retry_after_seconds=0.1),
        "gamma": SyntheticFaults(
            symbols_per_request=1, latency_ms=150, drop_rate=0.1, drop_heal=Duration("30m")
        ),
    }
    adapters = {n: SyntheticProvider(n, faults[n], clock=lambda: clock[0], on_call=seen) for n in NAMES}
    settings = msgspec.structs.replace(get_settings(), redis_url=redis_server.url, redis_prefix="mdfaults:")
    skew = [0.0]  # the registry's clock: moved past the breakers' cooldown at recovery
    registry = ProviderRegistry.shared(
        POLICY, settings, adapters=adapters, limit_window_seconds=WINDOW, clock=lambda: time.time() + skew[0]
    )
    t0 = time.monotonic()
    conn = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        # -- the faults: every request fails over to gamma, nothing is lost ------------------
        loaded = LoadedPolicy(version=1, policy=POLICY, body=TEXT, source="test")
        batches = await plan_sweep(conn, loaded, Tier.T0, NOW)
        requests = sum(len(b.jobs) for b in batches)
        results = [await run_sweep_batch(conn, POLICY, b, registry) for b in batches]
        assert all(r.failed == {} for r in results), [r.failed for r in results]
        served = {n: sum(r.providers.get(n, 0) for r in results) for n in NAMES}
        assert served == {"alpha": 0, "beta": 0, "gamma": requests}
        assert calls["alpha"] and calls["beta"], "alpha and beta were tried first"
        for name in ("alpha", "beta"):
            assert (await registry.store.breaker(name)).state == "open"
        queued = sum(r.backfills_queued for r in results)
        assert queued > 0 and sum(r.gap_bars for r in results) > 0  # gamma's late bars are gaps
        statuses = {s.name: s for s in await registry.statuses()}
        assert statuses["gamma"].health.latency_p50_ms >= 150  # slow, but the only one answering
        t1 = time.monotonic()

        # -- recovery: faults gone, late bars arrived; probes close the breakers ----------------
        clock[0] = NOW + timedelta(hours=3)
        for name in ("alpha", "gamma"):  # beta's 429 storm goes on
            adapters[name].faults = SyntheticFaults(symbols_per_request=1)
        skew[0] = 60.0  # past the breakers' cooldown (30 s)
        # the next sweep fetches what the faulty one left after its cursor (late bars at the end)
        for b in await plan_sweep(conn, loaded, Tier.T0, NOW):
            assert (await run_sweep_batch(conn, POLICY, b, registry)).failed == {}
        jobs = await claim_jobs(conn, "run-recovery", 500, timedelta(minutes=15))
        assert len(jobs) == await conn.fetchval("SELECT count(*) FROM backfill_jobs") > 0
        planned = await plan_batches(
            conn, jobs, registry, POLICY, run_id="run-recovery", policy_version=1, task_groups=list(NAMES)
        )
        log.info(
            "recovery batches: %s", {g: [(b.provider, len(b.jobs)) for b in bs] for g, bs in planned.items()}
        )
        outcomes = [await run_backfill_batch(pool, POLICY, b, registry) for g in planned.values() for b in g]
        assert sum(o.done for o in outcomes) == len(jobs)
        assert await conn.fetchval("SELECT count(*) FROM backfill_jobs WHERE status <> 'done'") == 0
        assert (await registry.store.breaker("alpha")).state == "closed"  # its probe succeeded
        t2 = time.monotonic()

        # -- nothing missing: every expected bar of the swept window is stored ----------------
        windows = [
            Window(
                symbol=j.symbol,
                exchange_mic=j.exchange_mic or "XNYS",
                interval=Interval.M1,
                after=j.start - timedelta(microseconds=1),
                until=NOW - timedelta(minutes=1),
            )
            for b in batches
            for j in b.jobs
        ]
        assert await find_gaps(conn, windows) == []
        assert await conn.fetchval("SELECT count(*) FROM confirmed_empty_ranges") == 0

        # -- limits: no provider ever saw more than its limit in any window ---------------------
        worst = {n: max_in_any_window(calls[n], WINDOW) for n in NAMES}
        log.info("faults %.1fs, recovery %.1fs", t1 - t0, t2 - t1)
        per_provider = {n: len(calls[n]) for n in NAMES}
        assert all(w <= LIMIT for w in worst.values()), (
            f"calls per provider {per_provider}, worst {WINDOW}s window {worst} (limit {LIMIT})"
        )
        assert max(len(calls[n]) for n in NAMES) > LIMIT  # the limit did bind
    finally:
        await registry.aclose()
        await pool.close()
        await conn.close()
    await assert_integrity(dsn)
