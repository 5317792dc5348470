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
from datetime import datetime

import asyncpg
import msgspec

from market_data import calendar
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.jobs import Job
from market_data.policy.loader import LoadedPolicy
from market_data.policy.schema import Policy, TierPolicy
from market_data.providers.base import BarRequest
from market_data.records import Bar, Interval, Quote, Tier, ensure_utc, utcnow
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.universe import UniverseEntry, active_symbols

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
    turns the hole in between into backfill jobs. Closed markets produce no jobs.
    """
    tp: TierPolicy = policy.tiers[tier]
    live_quotes = quotes_are_live(tp, now, wall or utcnow())
    entries = await active_symbols(conn, tier)
    if not entries:
        return []
    rows = await conn.fetch(
        """SELECT symbol, interval, max(last_ts) AS last_ts FROM ingestion_cursors
           WHERE symbol = ANY($1::text[]) AND interval = ANY($2::text[]) GROUP BY 1, 2""",
        [e.symbol for e in entries],
        [iv.value for iv in tp.intervals],
    )
    cursors = {(r["symbol"], r["interval"]): r["last_ts"] for r in rows}
    floor = now - tp.lookback.delta
    has_bars: dict[tuple[str, Interval, datetime], bool] = {}
    jobs: list[Job] = []
    for e in entries:
        for interval in tp.intervals:
            cursor = cursors.get((e.symbol, interval.value))
            if cursor is None:
                start = initial_start(e.exchange_mic, interval, now, tp.initial_sessions)
            else:
                start = max(cursor + interval.delta, floor)
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
    conn: asyncpg.Connection, loaded: LoadedPolicy, tier: Tier, now: datetime
) -> list[SweepBatch]:
    jobs = await plan_local_jobs(conn, loaded.policy, tier, now)
    batches = batch_jobs(jobs, loaded.policy.tiers[tier].batch_size)
    log.info(
        "sweep %s at %s with policy v%d: %d jobs in %d batches",
        tier,
        now.isoformat(),
        loaded.version,
        len(jobs),
        len(batches),
    )
    return [SweepBatch(tier=tier, policy_version=loaded.version, now=now, jobs=b) for b in batches]


def _fill_exchange(job: Job, universe: dict[str, UniverseEntry]) -> Job:
    if job.exchange_mic is not None:
        return job
    entry = universe.get(job.symbol)
    return msgspec.structs.replace(job, exchange_mic=entry.exchange_mic if entry else "XNYS")


async def run_sweep_batch(
    conn: asyncpg.Connection,
    policy: Policy,
    batch: SweepBatch,
    registry: ProviderRegistry,
) -> SweepResult:
    """Fetch every job of a batch concurrently, then store bars and quotes.

    Requests that no provider can answer are reported in `failed` and retried by the next
    run (their cursors did not move); if nothing at all succeeded, SweepFailed is raised.
    """
    started = time.monotonic()
    tp = policy.tiers[batch.tier]
    result = SweepResult(tier=batch.tier, policy_version=batch.policy_version, jobs=len(batch.jobs))
    preferred = tp.providers

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
        per_call = registry.max_symbols(f"bars:{interval.value}", preferred)
        for i in range(0, len(symbols), per_call):
            requests.append(
                BarRequest(
                    symbols=tuple(symbols[i : i + per_call]),
                    exchange_mic=mic,
                    interval=interval,
                    start=start,
                    end=end,
                )
            )
    quote_requests: list[tuple[str, list[str]]] = []
    for mic, symbols in quote_groups.items():
        per_call = registry.max_symbols("quotes", preferred)
        quote_requests.extend((mic, symbols[i : i + per_call]) for i in range(0, len(symbols), per_call))

    limit = asyncio.Semaphore(_concurrency(policy, registry, preferred))
    bars: list[Bar] = []
    quotes: list[Quote] = []
    providers: dict[str, int] = defaultdict(int)

    async def one_bar_request(req: BarRequest) -> None:
        async with limit:
            try:
                outcome = await registry.fetch_bars(req, preferred)
            except AllProvidersFailed as exc:
                result.failed[
                    f"bars:{req.interval.value}:{','.join(req.symbols[:3])}"
                    f"{'…' if len(req.symbols) > 3 else ''}"
                ] = str(exc)
                return
        providers[outcome.provider] += 1
        bars.extend(outcome.value)

    async def one_quote_request(mic: str, symbols: list[str]) -> None:
        async with limit:
            try:
                outcome = await registry.fetch_quotes(symbols, mic, preferred)
            except AllProvidersFailed as exc:
                result.failed[f"quotes:{','.join(symbols[:3])}"] = str(exc)
                return
        providers[outcome.provider] += 1
        quotes.extend(outcome.value)

    await asyncio.gather(
        *(one_bar_request(r) for r in requests),
        *(one_quote_request(mic, s) for mic, s in quote_requests),
    )
    result.requests = len(requests) + len(quote_requests)
    result.providers = dict(providers)

    written = await write_bars(conn, bars, policy_version=batch.policy_version, advance_cursors=True)
    result.bars_received, result.bars_inserted = written.received, written.inserted
    qw = await write_quotes(conn, quotes, policy_version=batch.policy_version)
    result.quotes_received, result.quotes_inserted = qw.received, qw.inserted
    result.seconds = round(time.monotonic() - started, 3)
    if result.requests and len(result.failed) == result.requests:
        raise SweepFailed(f"every request of the batch failed: {next(iter(result.failed.values()))}")
    return result


def _concurrency(policy: Policy, registry: ProviderRegistry, preferred: list[str]) -> int:
    names = registry.candidates("bars:1m", preferred) or list(registry.adapters)
    return max((policy.providers[n].max_concurrency for n in names[:1]), default=4)


def sweep_now(data_interval_end: datetime | None, wall: datetime) -> datetime:
    """The instant a sweep run covers: its data interval's end, never in the future."""
    if data_interval_end is None:
        return ensure_utc(wall)
    return ensure_utc(min(data_interval_end, wall))
