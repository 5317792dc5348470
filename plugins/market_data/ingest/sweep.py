"""Tier sweeps: plan jobs from universe + cursors, fetch them through the registry, store them.

A sweep run is `plan_sweep` once, then `run_sweep_batch` for each batch (a mapped Airflow
task each). Every step takes `now` explicitly: a re-run of the same Airflow run asks for
the same window and, through the point-in-time write path, leaves the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec
import redis.asyncio as aioredis

from market_data import calendar
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.gaps import Window, find_gaps
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.ingest.rlc import take_rlc_jobs
from market_data.jobs import Job
from market_data.metrics import task_metrics
from market_data.policy.loader import LoadedPolicy
from market_data.policy.schema import Policy, TierPolicy
from market_data.providers.base import BarRequest
from market_data.records import Bar, Interval, Quote, Tier, utcnow
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.universe import active_symbols

log = logging.getLogger(__name__)

MAX_MAP_LENGTH = 1024
"""Airflow's default `[core] max_map_length`: a plan never produces more batches."""


class SweepBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The unit of work of one mapped sweep task."""

    tier: Tier
    policy_version: int
    now: datetime
    jobs: list[Job]


class SweepResult(msgspec.Struct, kw_only=True):
    tier: Tier
    policy_version: int
    jobs: int = 0
    requests: int = 0
    bars_received: int = 0
    bars_inserted: int = 0
    quotes_received: int = 0
    quotes_inserted: int = 0
    providers: dict[str, int] = {}
    """Requests answered, per provider."""
    failed: dict[str, str] = {}
    """Requests no provider could answer: a label -> the errors."""
    gaps_found: int = 0
    """Missing-bar ranges found after the write."""
    gap_bars: int = 0
    backfills_queued: int = 0
    backfills_refused: int = 0
    seconds: float = 0.0


class SweepFailed(RuntimeError):
    """Every request of a batch failed: the task fails so Airflow retries it."""


def initial_start(mic: str, interval: Interval, now: datetime, sessions: int) -> datetime:
    """Where a symbol with no cursor starts: `sessions` completed sessions back."""
    at = now
    opened = calendar.last_completed_session_open(mic, at)
    for _ in range(sessions - 1):
        opened = calendar.last_completed_session_open(mic, opened)
    if interval is Interval.D1:
        return opened.replace(hour=0, minute=0, second=0, microsecond=0)
    return opened


def _has_complete_bar(mic: str, interval: Interval, start: datetime, now: datetime) -> bool:
    starts = calendar.expected_bar_starts_ns(mic, interval, calendar.to_ns(start), calendar.to_ns(now))
    if starts.size == 0:
        return False
    return bool(calendar.bar_end_ns(mic, interval, starts[:1])[0] <= calendar.to_ns(now))


def quotes_are_live(tp: TierPolicy, now: datetime, wall: datetime) -> bool:
    """Quotes exist only in the present: a run for an old window (a re-run, a catch-up)
    cannot fetch the quotes of its time, so it fetches none."""
    cadence = (tp.quote_cadence or tp.bar_cadence).seconds
    return tp.quotes and (wall - now).total_seconds() <= max(2 * cadence, 120)


async def newest_cursors(
    conn: asyncpg.Connection, symbols: Sequence[str], intervals: Sequence[Interval]
) -> dict[tuple[str, str], datetime]:
    """Newest cursor (over every provider) of each (symbol, interval value) that has one."""
    rows = await conn.fetch(
        """SELECT symbol, interval, max(last_ts) AS last_ts FROM ingestion_cursors
           WHERE symbol = ANY($1::text[]) AND interval = ANY($2::text[]) GROUP BY 1, 2""",
        list(symbols),
        [iv.value for iv in intervals],
    )
    return {(r["symbol"], r["interval"]): r["last_ts"] for r in rows}


async def plan_local_jobs(
    conn: asyncpg.Connection,
    policy: Policy,
    tier: Tier,
    now: datetime,
    wall: datetime | None = None,
) -> list[Job]:
    """Jobs for every active symbol of a tier whose cursor is behind `now`.

    A symbol without a cursor starts `initial_sessions` completed sessions back; one whose
    cursor is older than the tier's lookback starts at the lookback, and gap detection
    turns the hole in between into backfill jobs. Every job also reads the tier's
    `revision_window` again (bars a vendor may still correct). Closed markets produce no jobs.
    """
    tp: TierPolicy = policy.tiers[tier]
    live_quotes = quotes_are_live(tp, now, wall or utcnow())
    entries = await active_symbols(conn, tier)
    if not entries:
        return []
    cursors = await newest_cursors(conn, [e.symbol for e in entries], tp.intervals)
    floor = now - tp.lookback.delta
    reread_from = now - tp.revision_window.delta
    has_bars: dict[tuple[str, Interval, datetime], bool] = {}
    jobs: list[Job] = []
    for e in entries:
        for interval in tp.intervals:
            cursor = cursors.get((e.symbol, interval.value))
            if cursor is None:
                start = initial_start(e.exchange_mic, interval, now, tp.initial_sessions)
            else:
                start = min(max(cursor + interval.delta, floor), reread_from)
            key = (e.exchange_mic, interval, start)
            if key not in has_bars:
                has_bars[key] = _has_complete_bar(e.exchange_mic, interval, start, now)
            if has_bars[key]:
                jobs.append(
                    Job(
                        kind="bars",
                        symbol=e.symbol,
                        interval=interval,
                        start=start,
                        end=now,
                        exchange_mic=e.exchange_mic,
                        tier=tier,
                    )
                )
        if live_quotes and calendar.is_open_at(e.exchange_mic, now):
            jobs.append(Job(kind="quotes", symbol=e.symbol, exchange_mic=e.exchange_mic, tier=tier))
    return jobs


def batch_jobs(jobs: list[Job], batch_size: int, max_batches: int = MAX_MAP_LENGTH) -> list[list[Job]]:
    """Split jobs into batches of about `batch_size` symbols (a symbol's jobs stay together).

    The batch size grows when needed so the number of batches never exceeds `max_batches`.
    """
    by_symbol: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_symbol[job.symbol].append(job)
    symbols = list(by_symbol)
    per_batch = max(batch_size, -(-len(symbols) // max_batches))
    return [
        [job for s in symbols[i : i + per_batch] for job in by_symbol[s]]
        for i in range(0, len(symbols), per_batch)
    ]


async def plan_sweep(
    conn: asyncpg.Connection,
    loaded: LoadedPolicy,
    tier: Tier,
    now: datetime,
    *,
    redis: aioredis.Redis | None = None,
    run_id: str = "",
) -> list[SweepBatch]:
    """The run's batches: local jobs from universe + cursors, or the RLC list's jobs."""
    if tier not in loaded.policy.tiers:
        log.warning("tier %s is not in policy v%d: nothing to sweep", tier, loaded.version)
        return []
    if loaded.policy.jobs.mode == "rlc":
        if redis is None:
            raise RuntimeError("jobs.mode = rlc needs Redis")
        taken = await take_rlc_jobs(redis, conn, loaded.policy, tier, run_id)
        jobs = taken.jobs
        log.info(
            "RLC: %d job(s), %d rejected, %d duplicate(s)", len(jobs), len(taken.rejected), taken.duplicates
        )
    else:
        jobs = await plan_local_jobs(conn, loaded.policy, tier, now)
    batches = batch_jobs(jobs, loaded.policy.tiers[tier].batch_size)
    log.info(
        "sweep %s at %s with policy v%d (%s mode): %d jobs in %d batches",
        tier,
        now.isoformat(),
        loaded.version,
        loaded.policy.jobs.mode,
        len(jobs),
        len(batches),
    )
    return [SweepBatch(tier=tier, policy_version=loaded.version, now=now, jobs=b) for b in batches]


def _requests(
    batch: SweepBatch, registry: ProviderRegistry, preferred: list[str]
) -> tuple[list[BarRequest], list[tuple[str, list[str]]]]:
    """Bar requests (jobs sharing exchange, interval and window, sized for the provider)
    and quote requests (per exchange)."""
    groups: dict[tuple[str, Interval, datetime, datetime], list[str]] = defaultdict(list)
    quote_groups: dict[str, list[str]] = defaultdict(list)
    for job in batch.jobs:
        mic = job.exchange_mic or "XNYS"
        if job.kind == "bars":
            assert job.interval is not None and job.start is not None and job.end is not None
            groups[(mic, job.interval, job.start, min(job.end, batch.now))].append(job.symbol)
        else:
            quote_groups[mic].append(job.symbol)
    requests: list[BarRequest] = []
    for (mic, interval, start, end), symbols in groups.items():
        per_call = registry.max_symbols(f"bars:{interval.value}", preferred, mic)
        requests.extend(
            BarRequest(
                symbols=tuple(symbols[i : i + per_call]),
                exchange_mic=mic,
                interval=interval,
                start=start,
                end=end,
            )
            for i in range(0, len(symbols), per_call)
        )
    quote_requests: list[tuple[str, list[str]]] = []
    for mic, symbols in quote_groups.items():
        per_call = registry.max_symbols("quotes", preferred, mic)
        quote_requests.extend((mic, symbols[i : i + per_call]) for i in range(0, len(symbols), per_call))
    return requests, quote_requests


async def run_sweep_batch(
    conn: asyncpg.Connection,
    policy: Policy,
    batch: SweepBatch,
    registry: ProviderRegistry,
) -> SweepResult:
    """Fetch every job of a batch concurrently, store bars and quotes, queue the gaps.

    Requests that no provider can answer are reported in `failed` and retried by the next
    run (their cursors did not move); if nothing at all succeeded, SweepFailed is raised.
    """
    started = time.monotonic()
    preferred = policy.tiers[batch.tier].providers
    result = SweepResult(tier=batch.tier, policy_version=batch.policy_version, jobs=len(batch.jobs))
    requests, quote_requests = _requests(batch, registry, preferred)
    limit = asyncio.Semaphore(_concurrency(policy, registry, preferred, batch.jobs))
    metrics = task_metrics()
    bars: list[Bar] = []
    quotes: list[Quote] = []
    providers: dict[str, int] = defaultdict(int)

    async def one_bar_request(req: BarRequest) -> None:
        async with limit:
            try:
                outcome = await registry.fetch_bars(req, preferred)
            except AllProvidersFailed as exc:
                more = "…" if len(req.symbols) > 3 else ""
                result.failed[f"bars:{req.interval.value}:{','.join(req.symbols[:3])}{more}"] = str(exc)
                return
        providers[outcome.provider] += 1
        bars.extend(outcome.value)
        metrics.incr("jobs_processed_total", {"type": "bars", "provider": outcome.provider}, len(req.symbols))

    async def one_quote_request(mic: str, symbols: list[str]) -> None:
        async with limit:
            try:
                outcome = await registry.fetch_quotes(symbols, mic, preferred)
            except AllProvidersFailed as exc:
                result.failed[f"quotes:{','.join(symbols[:3])}"] = str(exc)
                return
        providers[outcome.provider] += 1
        quotes.extend(outcome.value)
        metrics.incr("jobs_processed_total", {"type": "quotes", "provider": outcome.provider}, len(symbols))

    await asyncio.gather(
        *(one_bar_request(r) for r in requests),
        *(one_quote_request(mic, s) for mic, s in quote_requests),
    )
    result.requests = len(requests) + len(quote_requests)
    result.providers = dict(providers)

    bar_jobs = [j for j in batch.jobs if j.kind == "bars"]
    previous = await _job_cursors(conn, bar_jobs)
    with metrics.timer("write_batch_ms"):
        written = await write_bars(conn, bars, policy_version=batch.policy_version, advance_cursors=True)
    result.bars_received, result.bars_inserted = written.received, written.inserted
    qw = await write_quotes(conn, quotes, policy_version=batch.policy_version)
    result.quotes_received, result.quotes_inserted = qw.received, qw.inserted
    await _detect_and_enqueue_gaps(conn, policy, batch, bar_jobs, previous, result)
    result.seconds = round(time.monotonic() - started, 3)
    if result.requests and len(result.failed) == result.requests:
        raise SweepFailed(f"every request of the batch failed: {next(iter(result.failed.values()))}")
    return result


async def _job_cursors(conn: asyncpg.Connection, jobs: list[Job]) -> dict[tuple[str, str], datetime]:
    """Newest cursor of each (symbol, interval) of the bar jobs."""
    if not jobs:
        return {}
    return await newest_cursors(
        conn, sorted({j.symbol for j in jobs}), sorted({j.interval for j in jobs if j.interval is not None})
    )


async def _detect_and_enqueue_gaps(
    conn: asyncpg.Connection,
    policy: Policy,
    batch: SweepBatch,
    jobs: list[Job],
    previous: dict[tuple[str, str], datetime],
    result: SweepResult,
) -> None:
    """Check each job's (previous cursor, new cursor] against the calendar; queue the holes."""
    if not jobs:
        return
    current = await _job_cursors(conn, jobs)
    windows = []
    for job in jobs:
        assert job.interval is not None and job.start is not None
        key = (job.symbol, job.interval.value)
        until = current.get(key)
        if until is None:
            continue  # nothing stored yet: no cursor, nothing to compare against
        # A job reaching back before the previous cursor (an RLC job delivered late or out of
        # order, a retried run) is checked from its own start: a hole it leaves behind the
        # cursor would otherwise never be looked at again.
        before_start = job.start - timedelta(microseconds=1)
        prev = previous.get(key)
        after = before_start if prev is None else min(prev, before_start)
        windows.append(
            Window(
                symbol=job.symbol,
                exchange_mic=job.exchange_mic or "XNYS",
                interval=job.interval,
                after=after,
                until=until,
            )
        )
    gaps = await find_gaps(conn, windows)
    metrics = task_metrics()
    for interval in {g.interval for g in gaps}:
        metrics.incr(
            "gaps_found_total", {"interval": interval.value}, sum(1 for g in gaps if g.interval is interval)
        )
    result.gaps_found = len(gaps)
    result.gap_bars = sum(g.bars for g in gaps)
    if not gaps:
        return
    enq = await enqueue_backfills(
        conn,
        [
            BackfillRange(symbol=g.symbol, interval=g.interval, start=g.start, end=g.end, tier=batch.tier)
            for g in gaps
        ],
        policy,
        policy_version=batch.policy_version,
    )
    result.backfills_queued = enq.inserted + enq.merged
    result.backfills_refused = enq.refused_total
    log.info(
        "gaps: %d range(s), %d bar(s) missing; %d queued (%d new), %d refused by the cap",
        len(gaps),
        result.gap_bars,
        result.backfills_queued,
        enq.inserted,
        enq.refused_total,
    )


def _concurrency(policy: Policy, registry: ProviderRegistry, preferred: list[str], jobs: list[Job]) -> int:
    """Concurrent calls of a batch: the max_concurrency of the provider that serves its first job."""
    capability = jobs[0].capability if jobs else "quotes"
    names = registry.candidates(capability, preferred) or list(registry.adapters)
    return max((policy.providers[n].max_concurrency for n in names[:1] if n in policy.providers), default=4)
