"""The RLC consumer under fuzzed lists: whatever the list holds, the run goes on.

Each example pushes a list of messages (fuzzed JSON of any shape, raw bytes with NULs and
invalid UTF-8, jobs outside the exchange calendar or on unknown exchanges, duplicates, and
valid jobs) and runs a sweep the way md_sweep does: take, run every batch, finish. Every
message is accounted for (a job, a duplicate, or a `rejected_jobs` row with its reason),
the batches fail nothing, and no provider's breaker counts a failure caused by a bad job.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data.ingest.rlc import finish_rlc_run, processing_list, source_list, take_rlc_jobs
from market_data.ingest.sweep import SweepBatch, batch_jobs, run_sweep_batch
from market_data.policy import parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Tier
from market_data.registry import ProviderRegistry
from tests.conftest import CLEAN_TABLES, REDIS_PREFIX
from tests.unit.test_fuzz_jobs import VALID, job_objects

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
TEXT = (
    open("include/policy.toml")
    .read()
    .replace('mode = "local"', 'mode = "rlc"')
    .replace('rlc_list = "md:rlc:jobs"', f'rlc_list = "{REDIS_PREFIX}fuzz:jobs"')
)
POLICY = parse_policy(TEXT)
SRC = source_list(POLICY, Tier.T0)


def job(**fields: Any) -> bytes:
    return json.dumps({**VALID, "tier": "T0", **fields}).encode()


POISON = [
    b"\x00",
    b'{"kind": "bars", "symbol": "AAPL", "\\u0000": 1}',
    b"\xff\xfe{",
    job(start="2005-01-03T14:30:00Z", end="2005-01-03T15:00:00Z"),  # before the calendar
    job(start="2031-01-03T14:30:00Z", end="2031-01-03T15:00:00Z"),  # after it
    job(start="0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
    job(exchange_mic="ZZZZ"),  # no such exchange
    job(start="2026-01-01T00:00:00Z", end="2026-11-23T15:00:00Z"),  # longer than backfill.max_range
    job(symbol="NOPE"),
    job(tier="T2"),
]
GOOD = [
    job(),
    job(symbol="MSFT", id="other-id"),
    job(symbol="NVDA", start="2026-11-23T14:30:00-00:00", end="2026-11-23T14:45:00Z"),
    json.dumps({"kind": "quotes", "symbol": "AMZN"}).encode(),
]
messages = st.lists(
    st.sampled_from(POISON)
    | st.sampled_from(GOOD)
    | job_objects.map(lambda o: json.dumps(o).encode())
    | st.binary(max_size=64),
    min_size=1,
    max_size=12,
)


def registry() -> ProviderRegistry:
    return ProviderRegistry(
        POLICY,
        {n: SyntheticProvider(n, clock=lambda: NOW) for n in ("synthetic", "synthetic_backup")},
        retry_wait=lambda _s: 0.0,
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=messages)
async def test_the_consumer_accounts_for_every_message_and_fails_nothing(conn, redis_client, batch) -> None:
    await conn.execute(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY")
    for key in [k async for k in redis_client.scan_iter(match=f"{REDIS_PREFIX}fuzz:*")]:
        await redis_client.delete(key)
    await redis_client.rpush(SRC, *batch)

    taken = await take_rlc_jobs(redis_client, conn, POLICY, Tier.T0, "fuzz-run")
    assert len(taken.jobs) + len(taken.rejected) + taken.duplicates == len(batch)
    assert await conn.fetchval("SELECT count(*) FROM rejected_jobs") == len(taken.rejected)
    assert all(r.reason.strip() and r.code for r in taken.rejected)
    work = processing_list(POLICY, Tier.T0, "fuzz-run")
    assert await redis_client.llen(work) == len(batch) - len(taken.rejected)

    reg = registry()
    for jobs in batch_jobs(taken.jobs, POLICY.tiers[Tier.T0].batch_size):
        result = await run_sweep_batch(
            conn, POLICY, SweepBatch(tier=Tier.T0, policy_version=1, now=NOW, jobs=jobs), reg
        )
        assert result.failed == {}, result.failed
    for name in reg.adapters:
        state = await reg.store.breaker(name)
        assert state.state == "closed" and state.failures == 0, (name, state)
    await finish_rlc_run(redis_client, POLICY, Tier.T0, "fuzz-run", succeeded=True)
    assert await redis_client.exists(work) == 0 and await redis_client.llen(SRC) == 0


async def test_each_poison_message_is_refused_with_its_reason(conn, redis_client) -> None:
    await redis_client.rpush(SRC, *POISON, *GOOD)
    taken = await take_rlc_jobs(redis_client, conn, POLICY, Tier.T0, "poison")
    assert sorted(j.symbol for j in taken.jobs) == ["AAPL", "AMZN", "MSFT", "NVDA"]
    codes = [r.code for r in taken.rejected]
    assert codes == [
        "malformed",
        "invalid",
        "malformed",
        "bad_range",
        "bad_range",
        "bad_range",
        "unknown_exchange",
        "bad_range",
        "unknown_symbol",
        "wrong_tier",
    ], taken.rejected
    reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM rejected_jobs ORDER BY id")]
    assert "outside the XNAS calendar" in reasons[3] and "longer than backfill.max_range (30d)" in reasons[7]
    payloads = [r["payload"] for r in await conn.fetch("SELECT payload FROM rejected_jobs ORDER BY id")]
    assert payloads[0] == "\\u0000"  # stored, NUL escaped (Postgres text cannot hold it)
    await redis_client.delete(processing_list(POLICY, Tier.T0, "poison"))
