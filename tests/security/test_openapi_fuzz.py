"""Schemathesis against the API's own OpenAPI document: every HTTP operation, /ops/* with the token.

The app runs in-process over ASGI (schemathesis starts its lifespan once, on its own event-loop
thread, and `seeded_db` stops it) on the run's own database (`md_dsn`: the universe from
include/universe.csv and policy v1), seeded here with bars (1m, 5m, 1d), quotes, cursors, SLO
samples, dead backfill jobs, and provider calls in the run's Redis prefix. Dictionaries mix
known tickers, instants, ids and providers into the generated values so requests reach that data.

Every response must pass schemathesis' default checks: no 5xx, a documented status code, a
documented content type, a body matching its schema, headers as documented, invalid requests
refused, valid ones accepted, 405 with Allow for undocumented methods, 401 where auth is
documented. Two are configured (reasons at CONFIG): valid data may get a documented 400/422
for what it means (narrowed by `schema_valid_form_is_accepted`: never for its form), and 413
counts as refusing invalid data. No operation is excluded (the WebSockets are not in the
document: they are not HTTP operations).

Budget (2-core CI): per operation the coverage phase's deterministic cases plus MAX_EXAMPLES
generated ones, Hypothesis derandomized (the same cases on every run), no deadline, no example
database: 23 operations, about 3,300 requests, 30-50 s for the whole file.

Mutating ops endpoints (reload, rollback, purge, requeue, backfill) are fuzzed like the rest, on
this run's database only; `test_ops_success_paths_match_the_document` sends the valid requests
the fuzzer is unlikely to build (a real policy, an existing dead job, a recent range) and
validates their 2xx answers with the same checks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from litestar.serialization import encode_json
from schemathesis.checks import CheckContext
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES as NEGATIVE_DEFAULT
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES as POSITIVE_DEFAULT
from schemathesis.core.transport import Response
from schemathesis.python import asgi as schemathesis_asgi

from api.app import create_app
from market_data import db
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval, Quote
from market_data.registry.health import Sample
from market_data.registry.state import RedisHealthStore
from market_data.settings import get_settings
from market_data.slo_samples import SloSample, store_samples
from tests.conftest import truncate_data

MAX_EXAMPLES = 150
"""Generated cases per operation, on top of the coverage phase's deterministic ones."""
SEED = 20261123
"""Schemathesis' seed; with Hypothesis derandomized, every run sends the same cases."""
MON_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
SEEN_AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
SEEDED = (("AAPL", "XNAS"), ("MSFT", "XNAS"), ("VOD.L", "XLON"))


CURSOR = {"symbol": "AAPL", "interval": "1m", "source": "synthetic"}
PROVIDER = "synthetic_backup"
"""Gets a few recorded calls, so /stats/providers has samples to show."""


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _slo_sample(at: datetime, tier: str, violating: int) -> SloSample:
    return SloSample(
        sampled_at=at,
        tier=tier,
        interval="1m",
        sampled_symbols=200,
        violating_symbols=violating,
        violation_rate=violating / 200,
        max_gap_seconds=60.0 * (violating + 1),
        lag_seconds=60.0,
        lag_p95_seconds=60.0,
        queue_depth=violating,
        oldest_age_seconds=0.0,
        active_symbols=200,
        uncovered_symbols=0,
        policy_version=1,
    )


async def _seed(dsn: str) -> None:
    await truncate_data(dsn)
    conn = await db.connect(dsn)
    try:
        provider = SyntheticProvider()
        for symbol, mic in SEEDED:
            for interval, minutes in ((Interval.M1, 390), (Interval.M5, 390), (Interval.D1, 3 * 1440)):
                bars = provider.bars_for(
                    symbol, mic, interval, MON_OPEN, MON_OPEN + timedelta(minutes=minutes), SEEN_AT
                )
                await write_bars(conn, bars, policy_version=1, advance_cursors=True)
            quote = Quote(
                symbol=symbol,
                ts=MON_OPEN + timedelta(hours=7),
                provider="synthetic",
                last=100.0,
                bid=99.9,
                ask=100.1,
            )
            await write_quotes(conn, [quote], policy_version=1)
        now = datetime.now(UTC)
        for i in range(3):
            at = now - timedelta(minutes=5 * i)
            await store_samples(conn, at, [_slo_sample(at, tier, i) for tier in ("T0", "T1")])
        for i in range(5):
            await conn.execute(
                """INSERT INTO backfill_jobs
                       (symbol, interval, start_ts, end_ts, tier, priority, source, status, last_error,
                        updated_at)
                   VALUES ('AAPL', '1m', $1, $2, 'T0', 10, 'gap', 'dead', 'ServerError: boom',
                           now() - $3::interval)""",
                MON_OPEN + timedelta(minutes=10 * i),
                MON_OPEN + timedelta(minutes=10 * i + 5),
                timedelta(days=i * 10),
            )
    finally:
        await conn.close()


def openapi_document(app: Litestar) -> dict[str, Any]:
    """The document the app serves at /schema/openapi.json (the same encoder, without a request)."""
    return cast(dict[str, Any], msgspec.json.decode(encode_json(app.openapi_schema.to_schema())))


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"deterministic": True},
        "auth": {"openapi": {"BearerToken": {"bearer": get_settings().ops_token}}},
        # known values mixed into the generated ones, so requests reach the seeded rows too
        "dictionaries": {
            "tickers": {"values": ["AAPL", "msft", "VOD.L", "SPY", "7203.T", "NOPE"]},
            "ticker_lists": {"values": ["AAPL", "AAPL,MSFT", "aapl, vod.l,,AAPL", "MSFT,NOPE"]},
            "instants": {"values": [iso(MON_OPEN), iso(MON_OPEN + timedelta(hours=2)), iso(SEEN_AT)]},
            "providers": {"values": ["synthetic", "synthetic_backup"]},
            "ids": {"values": [1, 2, 3, 5]},
        },
        "parameters": {
            "path.symbol": {"dictionary": "tickers", "probability": 0.7},
            "query.symbols": {"dictionary": "ticker_lists", "probability": 0.7},
            "body.symbols[*]": {"dictionary": "tickers", "probability": 0.7},
            "query.start": {"dictionary": "instants", "probability": 0.5},
            "query.end": {"dictionary": "instants", "probability": 0.5},
            "query.ts": {"dictionary": "instants", "probability": 0.7},
            "path.source": {"dictionary": "providers", "probability": 0.7},
            "path.job_id": {"dictionary": "ids", "probability": 0.5},
            "path.version": {"dictionary": "ids", "probability": 0.5},
        },
        "checks": {
            # Relaxed: the API refuses schema-valid values for what they mean (a range wider than the
            # interval's span, `since` over 90 days ago, a policy that does not validate) with its
            # documented 400 or 422; any other refusal still fails, and schema_valid_form_is_accepted
            # fails a 400 that refuses a valid value for its form.
            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULT, "400", "422"]},
            # 413 is a refusal too: the body limit (1 MiB, documented) refuses an oversized body unread.
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_DEFAULT, "413"]},
        },
    }
)
# Built at import (schemathesis makes one test per operation at collection) but not started: the
# ASGI transport runs the app's lifespan (pool, listeners) at its first request, after `seeded_db`.
# (schemathesis.pytest.from_fixture would load it lazily, but in 4.32.5 it sets
# `request.node._nodeid`, which pytest 9.2 no longer has; `seeded_db` checks the served document.)
APP = create_app(get_settings())
schema = schemathesis.openapi.from_dict(openapi_document(APP), config=CONFIG)
schema.app = APP


async def _provider_calls(add: bool) -> None:
    """A few calls of synthetic_backup in the run's shared provider state (Redis, the run's prefix)."""
    settings = get_settings()
    client = aioredis.from_url(settings.redis_url)
    try:
        # earlier tests of the session (sweeps) may have left real calls of this provider
        await client.delete(f"{settings.redis_prefix}provider:{PROVIDER}:samples")
        if not add:
            return
        store = RedisHealthStore(client, settings.redis_prefix)
        for i in range(3):
            call = Sample(at=time.time(), capability="quotes", latency_ms=2.0 + i, ok=True, completeness=1.0)
            await store.add_sample(PROVIDER, call)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def seeded_db(md_dsn: str) -> Iterator[str]:
    """The run's own database (md_dsn), seeded once for the module; the app's pool closed after."""
    asyncio.run(_seed(md_dsn))
    asyncio.run(_provider_calls(add=True))
    served = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)  # starts the lifespan
    assert served.raw_schema == schema.raw_schema, "the served document is not the one tested"
    yield md_dsn
    schemathesis_asgi.shutdown_lifespans()  # before md_dsn drops the database
    asyncio.run(_provider_calls(add=False))


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# How msgspec and Litestar word a value that does not fit its declared type or shape (api/errors.py
# passes the wording on), and the ticker check of /stocks/bars: a refusal for the form of a value.
FORM_REFUSAL = re.compile(
    r"Expected `|Invalid enum value|Invalid RFC3339|Object (missing|contains)|missing req|not a ticker"
)


def schema_valid_form_is_accepted(
    ctx: CheckContext, response: Response, case: schemathesis.Case
) -> bool | None:
    """Narrows the relaxed positive check: a schema-valid request may be refused for what it means,
    never for its form (that would be the document and the validation disagreeing)."""
    negative = case.meta is None or any(c.mode.is_negative for c in case.meta.components.values())
    if negative or response.status_code != 400:
        return None
    detail = str(response.json().get("detail", ""))
    if FORM_REFUSAL.search(detail):
        raise AssertionError(f"a schema-valid request was refused for its form: {detail}")
    return True


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case: schemathesis.Case, seeded_db: str) -> None:
    case.call_and_validate(additional_checks=[schema_valid_form_is_accepted])


def test_two_app_instances_serve_the_same_document() -> None:
    # every API process must describe itself alike (generated examples once made each one differ)
    assert openapi_document(create_app(get_settings())) == schema.raw_schema


def _call(path: str, method: str, expected: int, **parts: Any) -> Any:
    """One request the fuzzer is unlikely to build, validated by the same checks; its JSON body."""
    token = {"Authorization": f"Bearer {get_settings().ops_token}"}  # config auth covers generated cases only
    response = schema[path][method].Case(**parts).call_and_validate(headers=token)
    assert response.status_code == expected, response.text
    return response.json()


async def _add_dead_job(dsn: str) -> int:
    conn = await db.connect(dsn)
    try:
        job_id: int = await conn.fetchval(
            """INSERT INTO backfill_jobs (symbol, interval, start_ts, end_ts, tier, priority, source, status,
                                          last_error, updated_at)
               VALUES ('MSFT', '5m', $1, $2, 'T0', 10, 'gap', 'dead', 'ServerError: boom', now())
               RETURNING id""",
            MON_OPEN,
            MON_OPEN + timedelta(hours=1),
        )
        return job_id
    finally:
        await conn.close()


def test_ops_success_paths_match_the_document(seeded_db: str) -> None:
    policy = (get_settings().policy_file).read_text()
    active = _call("/ops/policy", "GET", 200)["version"]["version"]
    assert _call("/ops/validate", "POST", 200, body={"policy": policy})["ok"] is True
    reloaded = _call(
        "/ops/reload", "POST", 200, body={"policy": policy + "\n# fuzz run\n", "expected_active": active}
    )
    assert reloaded["created"] is True
    _call("/ops/policy/rollback/{version}", "POST", 200, path_parameters={"version": 1})
    assert len(_call("/ops/policy/versions", "GET", 200, query={"limit": 5})) >= 2
    _call("/ops/cursor/{symbol}/{interval}/{source}", "GET", 200, path_parameters=CURSOR)

    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    body = {
        "symbols": ["AAPL", "VOD.L"],
        "interval": "5m",
        "start": iso(end - timedelta(days=1)),
        "end": iso(end),
    }
    assert len(_call("/ops/backfill", "POST", 202, body=body)["job_ids"]) == 2

    job_id = asyncio.run(_add_dead_job(seeded_db))
    assert any(j["id"] == job_id for j in _call("/ops/dlq/backfills", "GET", 200)["jobs"])
    _call("/ops/dlq/backfills/requeue/{job_id}", "POST", 200, path_parameters={"job_id": job_id})
    _call("/ops/dlq/backfills/purge", "POST", 200, query={"older_than_days": 0})


def test_provider_samples_are_the_objects_the_document_describes(seeded_db: str) -> None:
    # the shared store keeps each call as an array; /stats/providers once passed the arrays on
    providers = {p["name"]: p for p in _call("/stats/providers", "GET", 200)["providers"]}
    samples = providers[PROVIDER]["samples"]
    assert samples and all(isinstance(s, dict) and s["capability"] == "quotes" for s in samples)
