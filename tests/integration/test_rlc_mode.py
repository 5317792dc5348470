"""RLC mode with real Redis: valid jobs run, malformed ones are rejected with reasons,
duplicates run once, and a run that fails gives its messages back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from market_data.ingest.rlc import finish_rlc_run, processing_list, source_list
from market_data.ingest.sweep import plan_sweep, run_sweep_batch
from market_data.policy import LoadedPolicy, parse_policy
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Tier
from market_data.registry import ProviderRegistry
from tests.conftest import REDIS_PREFIX

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
BASE = (
    open("include/policy.toml")
    .read()
    .replace('mode = "local"', 'mode = "rlc"')
    .replace('rlc_list = "md:rlc:jobs"', f'rlc_list = "{REDIS_PREFIX}rlc:jobs"')
)
POLICY = parse_policy(BASE)
LOADED = LoadedPolicy(version=1, policy=POLICY, body=BASE, source="test")


def bars_job(
    symbol: str, start: str = "2026-11-23T15:00:00Z", end: str = "2026-11-23T15:30:00Z", **extra
) -> bytes:
    return json.dumps(
        {"kind": "bars", "symbol": symbol, "interval": "1m", "start": start, "end": end, **extra}
    ).encode()


MALFORMED = {
    b"{not json": "malformed",
    json.dumps({"kind": "bars", "symbol": "AAPL"}).encode(): "missing_field",
    json.dumps({"kind": "candles", "symbol": "AAPL"}).encode(): "invalid",
    bars_job("aapl lower"): "invalid",
    bars_job("AAPL", start="2026-11-23T16:00:00Z", end="2026-11-23T15:00:00Z"): "bad_range",
    bars_job("AAPL", start="2026-11-23T15:00:00"): "invalid",  # no UTC offset
    bars_job("AAPL", colour="red"): "invalid",  # unknown field
    bars_job("ZZZZZ"): "unknown_symbol",
    bars_job("MSFT", tier="T2"): "wrong_tier",
    b"x" * 5000: "too_large",
}


@pytest.fixture
async def rlc(redis_client):
    yield redis_client
    for key in [k async for k in redis_client.scan_iter(match=f"{REDIS_PREFIX}rlc:*")]:
        await redis_client.delete(key)


async def test_valid_jobs_run_and_malformed_ones_are_rejected_with_reasons(rlc, conn) -> None:
    valid = [bars_job("AAPL"), bars_job("MSFT"), json.dumps({"kind": "quotes", "symbol": "NVDA"}).encode()]
    await rlc.rpush(
        source_list(POLICY, Tier.T0),
        *[m for pair in zip(valid, list(MALFORMED)[:3], strict=False) for m in pair],
        *list(MALFORMED)[3:],
    )
    batches = await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id="run-1")
    jobs = [j for b in batches for j in b.jobs]
    assert sorted((j.kind, j.symbol) for j in jobs) == [
        ("bars", "AAPL"),
        ("bars", "MSFT"),
        ("quotes", "NVDA"),
    ]
    assert all(j.tier is Tier.T0 and j.exchange_mic == "XNAS" for j in jobs)
    rejected = await conn.fetch("SELECT reason, payload FROM rejected_jobs ORDER BY id")
    assert len(rejected) == len(MALFORMED)
    by_payload = {r["payload"]: r["reason"] for r in rejected}
    for message, code in MALFORMED.items():
        reason = by_payload[message.decode()[:4096]]
        assert reason.startswith(code + ":"), (message[:60], reason)
    # rejected messages left the processing list; the valid ones wait there until the run ends
    assert await rlc.llen(processing_list(POLICY, Tier.T0, "run-1")) == 3
    registry = ProviderRegistry(
        POLICY,
        {
            "synthetic": SyntheticProvider(clock=lambda: NOW),
            "synthetic_backup": SyntheticProvider("synthetic_backup", clock=lambda: NOW),
        },
    )
    result = await run_sweep_batch(conn, POLICY, batches[0], registry)
    assert result.bars_inserted == 60 and result.quotes_inserted == 1
    await finish_rlc_run(rlc, POLICY, Tier.T0, "run-1", succeeded=True)
    assert await rlc.llen(processing_list(POLICY, Tier.T0, "run-1")) == 0
    assert await rlc.llen(source_list(POLICY, Tier.T0)) == 0


async def test_duplicates_run_once_and_order_does_not_matter(rlc, conn) -> None:
    msgs = [bars_job("AAPL"), bars_job("MSFT"), bars_job("AAPL"), bars_job("MSFT"), bars_job("AAPL")]
    await rlc.rpush(source_list(POLICY, Tier.T0), *msgs)
    batches = await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id="dup")
    assert sorted(j.symbol for b in batches for j in b.jobs) == ["AAPL", "MSFT"]


async def test_a_retried_plan_reuses_what_it_took(rlc, conn) -> None:
    await rlc.rpush(source_list(POLICY, Tier.T0), bars_job("AAPL"), bars_job("MSFT"))
    first = await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id="retry")
    await rlc.rpush(source_list(POLICY, Tier.T0), bars_job("NVDA"))  # arrives after the first try
    again = await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id="retry")
    assert [j.symbol for b in again for j in b.jobs] == [j.symbol for b in first for j in b.jobs]
    assert await rlc.lrange(source_list(POLICY, Tier.T0), 0, -1) == [bars_job("NVDA")]


async def test_a_failed_run_gives_its_messages_back_in_order(rlc, conn) -> None:
    await rlc.rpush(source_list(POLICY, Tier.T0), bars_job("AAPL"), bars_job("MSFT"))
    await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id="fail")
    await rlc.rpush(source_list(POLICY, Tier.T0), bars_job("NVDA"))
    returned = await finish_rlc_run(rlc, POLICY, Tier.T0, "fail", succeeded=False)
    assert returned == 2
    assert await rlc.lrange(source_list(POLICY, Tier.T0), 0, -1) == [
        bars_job("AAPL"),
        bars_job("MSFT"),
        bars_job("NVDA"),
    ]


async def test_redelivered_jobs_store_what_one_delivery_stored(rlc, conn) -> None:
    registry = ProviderRegistry(
        POLICY,
        {
            "synthetic": SyntheticProvider(clock=lambda: NOW),
            "synthetic_backup": SyntheticProvider("synthetic_backup", clock=lambda: NOW),
        },
    )
    for run in ("once", "twice"):
        await rlc.rpush(source_list(POLICY, Tier.T0), bars_job("AAPL"), bars_job("MSFT"))
        for b in await plan_sweep(conn, LOADED, Tier.T0, NOW, redis=rlc, run_id=run):
            await run_sweep_batch(conn, POLICY, b, registry)
        await finish_rlc_run(rlc, POLICY, Tier.T0, run, succeeded=True)
        if run == "once":
            after_one = await conn.fetch("SELECT symbol, ts, close, as_of FROM bars ORDER BY symbol, ts")
    after_two = await conn.fetch("SELECT symbol, ts, close, as_of FROM bars ORDER BY symbol, ts")
    assert [tuple(r) for r in after_two] == [tuple(r) for r in after_one]


def test_the_job_schema_is_the_same_for_both_modes() -> None:
    from market_data.jobs import Job, decode_job

    rlc_job = decode_job(bars_job("AAPL"))
    assert isinstance(rlc_job, Job)
    assert msgspec.convert(msgspec.to_builtins(rlc_job), Job) == rlc_job
