"""RLC mode: jobs pushed to Redis by an external rate-limit coordinator.

The coordinator RPUSHes JSON jobs (see `market_data.jobs`) to `<jobs.rlc_list>:<tier>`, e.g.
`md:rlc:jobs:T0`. A sweep run takes up to `jobs.rlc_max_per_run` of them by moving them
atomically to its own processing list (`<list>:processing:<run id>`); a retried plan reuses
that list, so a crash between taking and running loses nothing. When the run ends the
processing list is deleted (every batch succeeded) or moved back to the head of the source
list (otherwise): delivery is at-least-once, and since writes are point-in-time idempotent a
job run twice stores what it stored once.

Malformed messages are recorded in `rejected_jobs` with the reason and removed from the
processing list; the rest of the batch goes on. Identical messages are run once.
"""

from __future__ import annotations

import logging

import asyncpg
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from market_data import calendar
from market_data.jobs import Job, JobRejected, decode_job
from market_data.metrics import task_metrics
from market_data.policy.schema import Policy
from market_data.records import Interval, Tier

log = logging.getLogger(__name__)
MAX_STORED_PAYLOAD = 4096

# Move up to ARGV[1] messages from KEYS[1] (head) to KEYS[2] (tail), atomically.
_TAKE = """
local moved = 0
for i = 1, tonumber(ARGV[1]) do
    if not redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') then break end
    moved = moved + 1
end
return moved"""

# Put the processing list back at the head of the source list, in its original order.
_RETURN = """
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'RIGHT', 'LEFT') do n = n + 1 end
return n"""


class RlcUnavailable(RuntimeError):
    """Redis did not answer: an RLC run cannot take or hand back its jobs (its retry will)."""


def _unavailable(redis: aioredis.Redis, what: str, exc: Exception) -> RlcUnavailable:
    kw = redis.connection_pool.connection_kwargs
    where = f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return RlcUnavailable(
        f"jobs.mode = rlc needs Redis ({where}), which did not answer: {what} failed "
        f"({type(exc).__name__}: {exc}); the messages stay in Redis for this task's retry"
    )


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    code: str
    payload: str


class RlcTake(msgspec.Struct, kw_only=True):
    jobs: list[Job]
    rejected: list[Rejection]
    duplicates: int
    processing_list: str


def source_list(policy: Policy, tier: Tier) -> str:
    return f"{policy.jobs.rlc_list}:{tier.value}"


def processing_list(policy: Policy, tier: Tier, run_id: str) -> str:
    return f"{source_list(policy, tier)}:processing:{run_id}"


def _storable(text: str) -> str:
    """Text Postgres can store: a NUL character (valid JSON escapes it, a sender may not)
    would make the INSERT into rejected_jobs fail, and with it every run that takes it."""
    return text.replace("\x00", "\\u0000")


def check_servable(job: Job, mic: str, policy: Policy) -> None:
    """Refuse a job no provider can serve: an unknown exchange, a range outside its calendar
    or longer than `backfill.max_range`. Let through, such a job would fail its batch (the
    calendar raises) on every redelivery and count against healthy providers' breakers.

    Raises:
        JobRejected: with the reason.
    """
    try:
        calendar.exchange_calendar(mic)
    except calendar.CalendarError as exc:
        raise JobRejected(str(exc), "unknown_exchange") from exc
    if job.start is None or job.end is None:
        return
    problem: str | None = None
    try:
        max_range = policy.backfill.max_range_for(job.interval) if job.interval else policy.backfill.max_range
        if job.end - job.start > max_range.delta:
            problem = f"end: the range is longer than backfill.max_range ({max_range.text})"
        else:  # raises when the range is not inside the exchange's calendar
            calendar.expected_bar_starts_ns(
                mic, Interval.D1, calendar.to_ns(job.start), calendar.to_ns(job.end)
            )
    except calendar.CalendarError as exc:
        problem = str(exc)
    except (OverflowError, ValueError) as exc:  # beyond what a timestamp can hold
        problem = f"start/end: out of range ({exc})"
    if problem is not None:
        raise JobRejected(problem, "bad_range")


def _job_key(job: Job) -> tuple[object, ...]:
    return (job.kind, job.symbol, job.interval, job.start, job.end, job.provider)


async def take_rlc_jobs(
    redis: aioredis.Redis, conn: asyncpg.Connection, policy: Policy, tier: Tier, run_id: str
) -> RlcTake:
    """Take this run's jobs (or the ones it already took), check them against the universe.

    Raises:
        RlcUnavailable: Redis did not answer (nothing was taken, or what was taken stays in
            the run's processing list for its retry).
    """
    src, work = source_list(policy, tier), processing_list(policy, tier, run_id)
    try:
        if not await redis.exists(work):
            moved = await redis.eval(_TAKE, 2, src, work, policy.jobs.rlc_max_per_run)
            log.info("RLC %s: took %d message(s) into %s", src, moved, work)
        else:
            log.info("RLC %s: resuming %s taken by an earlier try of this run", src, work)
        raw: list[bytes] = await redis.lrange(work, 0, -1)  # type: ignore[assignment]  # bytes: no decode_responses
    except (RedisError, OSError) as exc:
        raise _unavailable(redis, f"taking jobs from {src}", exc) from exc
    universe = {
        r["symbol"]: (r["exchange_mic"], r["tier"])
        for r in await conn.fetch("SELECT symbol, exchange_mic, tier FROM symbol_universe WHERE active")
    }
    jobs: list[Job] = []
    rejected: list[Rejection] = []
    rejected_raw: list[bytes] = []
    seen: set[tuple[object, ...]] = set()
    duplicates = 0
    for message in raw:
        try:
            job = decode_job(message)
            known = universe.get(job.symbol)
            if known is None:
                raise JobRejected(
                    f"symbol: {job.symbol} is not an active symbol of the universe", "unknown_symbol"
                )
            if job.tier is not None and job.tier is not tier:
                raise JobRejected(f"tier: job for {job.tier} arrived on the {tier} list", "wrong_tier")
            job = msgspec.structs.replace(job, exchange_mic=job.exchange_mic or known[0], tier=tier)
            check_servable(job, job.exchange_mic or known[0], policy)
        except JobRejected as exc:
            text = _storable(message.decode("utf-8", errors="replace"))[:MAX_STORED_PAYLOAD]
            rejected.append(Rejection(reason=_storable(exc.reason), code=exc.code, payload=text))
            rejected_raw.append(message)
            continue
        key = _job_key(job)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        jobs.append(job)
    metrics = task_metrics()
    for r in rejected:
        metrics.incr("jobs_rejected_total", {"reason": r.code})
    if rejected:
        await conn.executemany(
            "INSERT INTO rejected_jobs (source, reason, payload) VALUES ($1, $2, $3)",
            [(f"rlc:{src}", f"{r.code}: {r.reason}", r.payload) for r in rejected],
        )
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for message in rejected_raw:
                    pipe.lrem(work, 1, message)  # type: ignore[arg-type]  # redis-py accepts bytes
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(redis, f"removing rejected messages from {work}", exc) from exc
        log.warning("RLC %s: %d message(s) rejected (see rejected_jobs)", src, len(rejected))
    return RlcTake(jobs=jobs, rejected=rejected, duplicates=duplicates, processing_list=work)


async def finish_rlc_run(
    redis: aioredis.Redis, policy: Policy, tier: Tier, run_id: str, *, succeeded: bool
) -> int:
    """Drop the run's processing list, or give its messages back when the run did not succeed.

    Returns how many messages went back to the source list.

    Raises:
        RlcUnavailable: Redis did not answer (the processing list is left as it was).
    """
    src, work = source_list(policy, tier), processing_list(policy, tier, run_id)
    try:
        if succeeded:
            await redis.delete(work)
            return 0
        returned = int(await redis.eval(_RETURN, 2, src, work))
    except (RedisError, OSError) as exc:
        raise _unavailable(redis, f"ending run {run_id} ({work})", exc) from exc
    if returned:
        log.warning(
            "RLC %s: run %s did not succeed; %d message(s) returned to the list", src, run_id, returned
        )
    return returned
