"""storage: bytes per stored bar, the yearly growth per tier, and one-day reads as `bars` grows.

A database of this run gets `--storage-symbols` (500) symbols' 1m bars, one NYSE session after
another from about two years back (the sessions of the exchange calendar, early closes
included), inserted minute by minute across all symbols as the sweeps store them, so the
heap and the primary key's index are laid out as in production; the monthly partitions
exist beforehand, as `md_maintenance` keeps them. The table is grown to each of
`--storage-sizes` (1M, 10M, 100M bars: the largest only when the disk has room for it, with a
margin) and at each size, after VACUUM ANALYZE (what autovacuum does to a settled table), it
is measured twice: as the sweeps wrote it, and after every month that has ended is compacted
(`market_data.partitions`: what `md_maintenance` does after each month, so every month but
the current one is compacted in production). Each time:

- its size: heap, indexes, and both per stored bar (`pg_table_size`, `pg_indexes_size` of
  every partition);
- `--storage-reads` (2,000) one-day 1m history reads of a random symbol and session, through
  the API's own read path (`api.stocks.history.read_page`, the query `/history?start=&end=`
  runs), one at a time on one connection, after 200 of warm-up; and as many reads of the
  newest session.

The target is that the p50 of the random one-day read of the compacted table does not grow
with the table: at most 1.2x from 1M to 10M bars (and to 100M). Measured one size after
another, the 1M figure and the larger one are minutes apart, and on this shared machine the
same 1M read measured 0.64 ms in one quiet run and 0.80 ms in the next. So the ratio compares
them in the same run: a second database of this run holds the smallest size (loaded and
compacted the same way), and at each larger size `--storage-reads` reads of each are taken in
alternating slices (the order flipping every slice), on the same server at the same time;
the ratio is their p50s'. The p50 of the smallest size measured alone at the start is in the
row's details (`alone_ratio`), with each size's reads as written and of its newest session.

The server: by default (`--storage-postgres own`) a Postgres of the bench's own, started from
the installed binaries into /var/tmp (`tests.faults.servers.PrivatePostgres`) with the memory
settings README "Storage growth" recommends for a database host (`production_memory`:
shared_buffers a quarter of the machine's memory, effective_cache_size three quarters), the
settings docker-compose.yaml's Postgres takes from POSTGRES_SHARED_BUFFERS and
POSTGRES_EFFECTIVE_CACHE_SIZE. A day's pages of a 100M-bar table then come from Postgres' own
buffers, not its default 128 MB and the operating system's cache. `--storage-postgres shared`
measures on DATABASE_URL's server as it is configured (this machine's: 128 MB). The server's
settings are in the rows' details.

The sizing table (README, "Storage growth") is computed from the measured bytes per bar and
per quote, the default policy's intervals, cadences and retention, and the exchange
calendars of the universe's exchanges; `python -m tests.benchmarks.bench_storage` prints it
after measuring at 1M bars only (a few minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from api.stocks.history import read_page
from api.stocks.pagination import HistoryWindow
from api.stocks.params import SortOrder
from api.stocks.symbols import Listed
from market_data import calendar
from market_data.partitions import compact, due_for_compaction
from market_data.policy import load_policy_file
from market_data.records import Interval, Tier
from market_data.settings import get_settings
from market_data.timeframes import Align
from tests.benchmarks.harness import BASE_DSN, BenchDb, Row, bench_db, log, si

NAME = "storage"
MIC = "XNYS"
WARMUP_READS = 200
P50_TARGET = 1.2
DISK_MARGIN = 2.0
"""The largest size is loaded only if the disk has this many times its estimated size free
(WAL, the VACUUM's work, other users of the disk), plus 10 GB."""
SIZE_EXCHANGES = {
    "XNYS": "NYSE, Nasdaq, NYSE Arca (XNYS, XNAS, ARCX: the same hours)",
    "XLON": "London (XLON)",
    "XTKS": "Tokyo (XTKS)",
}

INSERT_SESSION = """
INSERT INTO bars (symbol, interval, ts, as_of, provider, status, open, high, low, close, volume,
                  vwap, trade_count, policy_version)
SELECT s.symbol, '1m', t.ts, t.ts + interval '75 seconds', 'synthetic', 'final',
       p.px, p.px * 1.001, p.px * 0.999, p.px * (0.999 + random() * 0.002), p.vol,
       p.px * (0.9995 + random() * 0.001), (p.vol / 40)::int + 1, 1
FROM unnest($1::timestamptz[]) AS t(ts)
CROSS JOIN unnest($2::text[]) AS s(symbol)
CROSS JOIN LATERAL (SELECT round((20 + random() * 480)::numeric, 4)::float8 AS px,
                           (random() * 50000)::bigint + 100 AS vol
                    WHERE s.symbol IS NOT NULL) p
ORDER BY t.ts, s.symbol"""
"""One session of 1m bars for every symbol, minute by minute as the sweeps store them."""

INSERT_QUOTES = """
INSERT INTO quotes (symbol, ts, provider, as_of, last, bid, ask, bid_size, ask_size, policy_version)
SELECT s.symbol, t.ts + interval '59 seconds', 'synthetic', t.ts + interval '61 seconds',
       q.px, q.px - 0.01, q.px + 0.01, 100, 200, 1
FROM unnest($1::timestamptz[]) AS t(ts)
CROSS JOIN unnest($2::text[]) AS s(symbol)
CROSS JOIN LATERAL (SELECT round((20 + random() * 480)::numeric, 4)::float8 AS px
                    WHERE s.symbol IS NOT NULL) q
ORDER BY t.ts, s.symbol"""
"""A quote per symbol per minute of a session: what a T0 sweep with quote_cadence 1m stores."""

TABLE_SIZES = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0)::int8 AS heap,
       coalesce(sum(pg_indexes_size(c.oid)), 0)::int8 AS indexes,
       count(*) AS partitions
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass"""


def parse_size(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def session_minutes(mic: str, sessions: int, now: datetime) -> list[list[datetime]]:
    """The 1m bar starts of the last `sessions` completed sessions, oldest first."""
    last_open = calendar.last_completed_session_open(mic, now)
    end = last_open + timedelta(days=1)
    start = end - timedelta(days=int(sessions * 1.6) + 30)
    starts = calendar.expected_bar_starts_ns(mic, Interval.M1, calendar.to_ns(start), calendar.to_ns(end))
    days = starts // (86_400 * 10**9)
    bounds = np.flatnonzero(np.diff(days)) + 1
    groups = np.split(starts, bounds)[-sessions:]
    if len(groups) < sessions:
        raise RuntimeError(f"{mic}: only {len(groups)} sessions found, {sessions} wanted")
    return [[calendar.to_datetime(ns) for ns in g] for g in groups]


@dataclass
class Layout:
    """The table and its reads in one physical layout."""

    heap_bytes: int
    index_bytes: int
    bytes_per_bar: float
    heap_per_bar: float
    index_per_bar: float
    random_day: dict[str, float]
    newest_day: dict[str, float]


@dataclass
class SizeMeasure:
    bars: int
    sessions: int
    partitions: int
    load_seconds: float
    compact_seconds: float
    compacted_partitions: int
    as_written: Layout
    compacted: Layout
    against_smallest: dict[str, Any] | None = None
    """Alternated with the smallest size's database: both p50s and their ratio (larger sizes)."""


def percentiles(values: Sequence[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(v), 3),
        "p90_ms": round(1000 * v[int(0.9 * (len(v) - 1))], 3),
        "p99_ms": round(1000 * v[int(0.99 * (len(v) - 1))], 3),
        "mean_ms": round(1000 * statistics.fmean(v), 3),
    }


async def table_sizes(conn: asyncpg.Connection, table: str) -> tuple[int, int, int]:
    row = await conn.fetchrow(TABLE_SIZES, table)
    return int(row["heap"]), int(row["indexes"]), int(row["partitions"])


async def layout(
    conn: asyncpg.Connection,
    bars: int,
    symbols: list[str],
    loaded: list[list[datetime]],
    reads: int,
    rng: random.Random,
) -> Layout:
    t = time.monotonic()
    await conn.execute("VACUUM ANALYZE bars")
    log(f"storage: VACUUM ANALYZE {time.monotonic() - t:.0f} s")
    heap, index, _ = await table_sizes(conn, "bars")
    random_day, newest_day = await measure_reads(conn, symbols, loaded, reads, rng)
    return Layout(
        heap_bytes=heap,
        index_bytes=index,
        bytes_per_bar=round((heap + index) / bars, 1),
        heap_per_bar=round(heap / bars, 1),
        index_per_bar=round(index / bars, 1),
        random_day=random_day,
        newest_day=newest_day,
    )


async def time_reads(
    conn: asyncpg.Connection, picks: Sequence[tuple[str, list[datetime]]], as_of: datetime
) -> list[float]:
    """Seconds of each one-day read (`/history?start=open&end=close` as the API reads it)."""
    out = []
    for symbol, minutes in picks:
        window = HistoryWindow(
            symbol=symbol,
            timeframe=Interval.M1.value,
            align=Align.SESSION,
            base=Interval.M1,
            sort=SortOrder.ASC,
            backward=False,
            start=minutes[0],
            end=minutes[-1] + timedelta(minutes=1),
            as_of=as_of,
        )
        t = time.perf_counter()
        page = await read_page(conn, window, Listed(symbol, MIC, Tier.T0.value), 1000)
        out.append(time.perf_counter() - t)
        if len(page.bars) != len(minutes):
            raise AssertionError(f"{symbol} {minutes[0]}: {len(page.bars)} bars read, {len(minutes)} stored")
    return out


async def measure_reads(
    conn: asyncpg.Connection,
    symbols: list[str],
    loaded: list[list[datetime]],
    reads: int,
    rng: random.Random,
) -> tuple[dict[str, float], dict[str, float]]:
    as_of = datetime.now(UTC)
    pick = [(rng.choice(symbols), rng.choice(loaded)) for _ in range(WARMUP_READS + reads)]
    await time_reads(conn, pick[:WARMUP_READS], as_of)
    random_day = await time_reads(conn, pick[WARMUP_READS:], as_of)
    newest = [(rng.choice(symbols), loaded[-1]) for _ in range(reads)]
    newest_day = await time_reads(conn, newest, as_of)
    return percentiles(random_day), percentiles(newest_day)


async def alternated_reads(
    small: asyncpg.Connection,
    small_sessions: list[list[datetime]],
    large: asyncpg.Connection,
    large_sessions: list[list[datetime]],
    symbols: list[str],
    reads: int,
    rng: random.Random,
    slices: int = 10,
) -> dict[str, Any]:
    """`reads` random one-day reads of each database in `slices` alternating slices (the order
    flipping every slice, after a warm-up of each): their p50s and the ratio large / small."""
    as_of = datetime.now(UTC)

    def picks(sessions: list[list[datetime]], n: int) -> list[tuple[str, list[datetime]]]:
        return [(rng.choice(symbols), rng.choice(sessions)) for _ in range(n)]

    await time_reads(small, picks(small_sessions, WARMUP_READS), as_of)
    await time_reads(large, picks(large_sessions, WARMUP_READS), as_of)
    times: dict[str, list[float]] = {"small": [], "large": []}
    per_slice = max(1, reads // slices)
    for i in range(slices):
        order = [("small", small, small_sessions), ("large", large, large_sessions)]
        if i % 2:
            order.reverse()
        for name, conn, sessions in order:
            times[name] += await time_reads(conn, picks(sessions, per_slice), as_of)
    small_p, large_p = percentiles(times["small"]), percentiles(times["large"])
    return {
        "small": small_p,
        "large": large_p,
        "ratio": round(large_p["p50_ms"] / small_p["p50_ms"], 3),
        "reads_each": per_slice * slices,
        "slices": slices,
    }


async def load_smallest(d: BenchDb, symbols: list[str], sessions: list[list[datetime]]) -> asyncpg.Connection:
    """The smallest size in a database of its own, loaded and compacted as the grown one was."""
    conn = await d.connect()
    await prepare(conn, symbols, sessions[0][0], ["bars"])
    await load_sessions(conn, INSERT_SESSION, symbols, sessions)
    for name in await due_for_compaction(conn):
        await compact(conn, name)
    await conn.execute("VACUUM ANALYZE bars")
    return conn


def describe(x: Layout) -> str:
    return (
        f"{(x.heap_bytes + x.index_bytes) / 1e9:.2f} GB, {x.bytes_per_bar:.0f} B/bar; one-day read p50 "
        f"{x.random_day['p50_ms']:.2f} ms (random day), {x.newest_day['p50_ms']:.2f} ms (newest day)"
    )


def free_bytes(path: str) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return shutil.disk_usage("/").free


async def load_sessions(
    conn: asyncpg.Connection, sql: str, symbols: list[str], sessions: Sequence[list[datetime]]
) -> float:
    t = time.monotonic()
    for i, minutes in enumerate(sessions):
        await conn.execute(sql, minutes, symbols)
        if i % 50 == 49:
            log(f"storage: {i + 1} of {len(sessions)} sessions loaded ({time.monotonic() - t:.0f} s)")
    return time.monotonic() - t


async def prepare(conn: asyncpg.Connection, symbols: list[str], first: datetime, tables: list[str]) -> None:
    """A fresh bench database made ready to load: `symbols` in the universe, partitions from `first`."""
    await conn.execute("SET synchronous_commit = on")
    for table in tables:
        await ensure_partitions(conn, table, first)
    await conn.copy_records_to_table(
        "symbol_universe",
        records=[(s, MIC, "T0") for s in symbols],
        columns=["symbol", "exchange_mic", "tier"],
    )


def production_memory(total_bytes: int) -> dict[str, str]:
    """The memory settings README "Storage growth" recommends for a host of `total_bytes`.

    shared_buffers a quarter of the memory (PostgreSQL's documentation: "a reasonable starting
    value" on a dedicated database server), effective_cache_size three quarters (what the
    planner may count on the operating system to cache besides).
    """
    mb = total_bytes // 2**20
    return {"shared_buffers": f"{mb // 4}MB", "effective_cache_size": f"{mb * 3 // 4}MB"}


@contextlib.contextmanager
def storage_server(kind: str) -> Iterator[str]:
    """The DSN of the server to measure on: one started here ('own'), or DATABASE_URL's ('shared')."""
    if kind == "shared":
        yield BASE_DSN
        return
    if kind != "own":
        raise ValueError(f"--storage-postgres must be own or shared, not {kind!r}")
    import psutil

    from tests.faults.servers import PrivatePostgres, ServerError

    settings = {**production_memory(psutil.virtual_memory().total), "max_connections": "20"}
    pg: PrivatePostgres | None = None
    try:
        try:
            pg = PrivatePostgres(settings, parent="/var/tmp")  # on disk: /tmp may be a tmpfs
            log(f"storage: starting a Postgres of its own in {pg.root} with {settings}")
            pg.initdb()
            pg.start()
        except ServerError as e:
            raise ServerError(f"{e} (or measure on DATABASE_URL's server: --storage-postgres shared)") from e
        yield pg.dsn()
    finally:
        if pg is not None:
            pg.remove()


SERVER_SETTINGS = """
SELECT name, current_setting(name) FROM pg_settings
WHERE name IN ('server_version', 'shared_buffers', 'effective_cache_size', 'max_wal_size',
               'autovacuum', 'random_page_cost', 'work_mem')"""


async def ensure_partitions(conn: asyncpg.Connection, table: str, first: datetime) -> None:
    months = (datetime.now(UTC).year - first.year) * 12 + datetime.now(UTC).month - first.month + 2
    await conn.fetchval("SELECT md_ensure_month_partitions($1, $2::date, $3)", table, first.date(), months)


# ------------------------------------------------------------------------------------------------
# the sizing table
# ------------------------------------------------------------------------------------------------
def yearly_bars(mic: str, interval: Interval, year: int) -> int:
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    return int(
        calendar.expected_bar_starts_ns(mic, interval, calendar.to_ns(start), calendar.to_ns(end)).size
    )


def sizing_table(bytes_per_bar: float, bytes_per_quote: float, year: int) -> str:
    """Rows and bytes per year per 1,000 symbols per tier (default policy, exchange calendars)."""
    policy = load_policy_file(get_settings().policy_file).policy
    lines = [
        f"| tier | stored | exchange | per symbol per {year} | rows per year per 1,000 symbols "
        "| size per year per 1,000 symbols |",
        "|---|---|---|---|---|---|",
    ]
    for tier in Tier:
        tp = policy.tiers[tier]
        for interval in tp.intervals:
            for mic, label in SIZE_EXCHANGES.items():
                n = yearly_bars(mic, interval, year)
                rows = n * 1000
                lines.append(
                    f"| {tier.value} | {interval.value} bars | {label} | {n:,} | {si(rows)} "
                    f"| {rows * bytes_per_bar / 1e9:.2f} GB |"
                )
        if tp.quotes:
            cadence = (tp.quote_cadence or tp.bar_cadence).seconds
            keep = policy.retention.quotes
            for mic, label in SIZE_EXCHANGES.items():
                n = yearly_bars(mic, Interval.M1, year) * 60 // int(cadence)
                rows = n * 1000
                kept = rows * keep.seconds / (365 * 86_400)
                lines.append(
                    f"| {tier.value} | quotes every {(tp.quote_cadence or tp.bar_cadence).text} | {label} "
                    f"| {n:,} | {si(rows)} (kept {keep.text}: {si(kept)}) "
                    f"| {rows * bytes_per_quote / 1e9:.2f} GB (kept: {kept * bytes_per_quote / 1e9:.2f} GB) |"
                )
    return "\n".join(lines)


def settings_note(bytes_per_bar: float, heap: float, index: float, bytes_per_quote: float) -> str:
    policy = load_policy_file(get_settings().policy_file).policy
    r = policy.retention
    return (
        f"bytes per stored bar: {bytes_per_bar:.0f} ({heap:.0f} heap + {index:.0f} primary-key index); "
        f"per quote: {bytes_per_quote:.0f}. bars: monthly range partitions by ts, "
        f"{r.partitions_ahead} months created ahead, never purged; quotes: monthly partitions, "
        f"kept {r.quotes.text}"
    )


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
async def measure(args: argparse.Namespace) -> tuple[list[SizeMeasure], dict[str, Any]]:
    server = str(getattr(args, "storage_postgres", "own"))
    with storage_server(server) as base_dsn:
        async with (
            bench_db(NAME, base_dsn=base_dsn) as d,
            bench_db(NAME, suffix="_smallest", base_dsn=base_dsn) as smallest_db,
        ):
            return await grow_and_read(d, smallest_db, args, server)


async def grow_and_read(
    d: BenchDb, smallest_db: BenchDb, args: argparse.Namespace, server: str
) -> tuple[list[SizeMeasure], dict[str, Any]]:
    """Grow `bars` in `d` size after size, measuring each; the smallest is copied to `smallest_db`."""
    symbols_n = int(getattr(args, "storage_symbols", 500))
    sizes = sorted(parse_size(s) for s in str(getattr(args, "storage_sizes", "1M,10M,100M")).split(","))
    reads = int(getattr(args, "storage_reads", 2000))
    rng = random.Random(19)
    symbols = [f"Q{i:03d}" for i in range(symbols_n)]
    per_session = symbols_n * 390
    plan = [max(1, round(size / per_session)) for size in sizes]
    minutes = session_minutes(MIC, plan[-1], datetime.now(UTC))
    out: list[SizeMeasure] = []
    extra: dict[str, Any] = {"symbols": symbols_n, "sizes_asked": sizes, "skipped": None}
    conn = await d.connect()
    small: asyncpg.Connection | None = None
    try:
        extra["server"] = {"kind": server, **dict(await conn.fetch(SERVER_SETTINGS))}
        log(f"storage: measuring on {extra['server']}")
        await prepare(conn, symbols, minutes[0][0], ["bars", "quotes"])
        # quotes: five sessions are enough for their bytes per row
        q_sessions = minutes[-5:]
        await load_sessions(conn, INSERT_QUOTES, symbols, q_sessions)
        await conn.execute("VACUUM ANALYZE quotes")
        q_heap, q_index, _ = await table_sizes(conn, "quotes")
        q_rows = int(await conn.fetchval("SELECT count(*) FROM quotes"))
        extra["quotes"] = {"rows": q_rows, "heap_bytes": q_heap, "index_bytes": q_index}
        extra["bytes_per_quote"] = (q_heap + q_index) / q_rows
        data_dir = str(await conn.fetchval("SHOW data_directory"))
        done = 0
        for size, sessions in zip(sizes, plan, strict=True):
            if out and size > 20_000_000:
                need = out[-1].as_written.bytes_per_bar * (sessions - done) * per_session * DISK_MARGIN + 10e9
                free = free_bytes(data_dir)
                if free < need:
                    extra["skipped"] = (
                        f"{si(size)} bars: {free / 1e9:.0f} GB free on the database's disk, "
                        f"{need / 1e9:.0f} GB wanted (estimate x {DISK_MARGIN:g} + 10 GB)"
                    )
                    log(f"storage: skipping {extra['skipped']}")
                    break
            log(f"storage: growing bars to {sessions} sessions x {symbols_n} symbols")
            seconds = await load_sessions(conn, INSERT_SESSION, symbols, minutes[done:sessions])
            done = sessions
            bars = int(await conn.fetchval("SELECT count(*) FROM bars"))
            _, _, parts = await table_sizes(conn, "bars")
            written = await layout(conn, bars, symbols, minutes[:done], reads, rng)
            log(f"storage: {si(bars)} bars as written: {describe(written)}")
            t = time.monotonic()
            due = await due_for_compaction(conn)
            for name in due:
                await compact(conn, name)
            compact_seconds = time.monotonic() - t
            log(f"storage: compacted {len(due)} closed months in {compact_seconds:.0f} s")
            compacted = await layout(conn, bars, symbols, minutes[:done], reads, rng)
            log(f"storage: {si(bars)} bars compacted: {describe(compacted)}")
            against = None
            if not out:
                log(f"storage: the same {plan[0]} sessions in a database of their own, to read alongside")
                small = await load_smallest(smallest_db, symbols, minutes[: plan[0]])
            else:
                assert small is not None
                against = await alternated_reads(
                    small, minutes[: plan[0]], conn, minutes[:done], symbols, reads, rng
                )
                log(
                    f"storage: alternated one-day reads, p50 {si(bars)} "
                    f"{against['large']['p50_ms']:.2f} ms vs {si(out[0].bars)} "
                    f"{against['small']['p50_ms']:.2f} ms: {against['ratio']:.2f}x"
                )
            out.append(
                SizeMeasure(
                    bars=bars,
                    sessions=done,
                    partitions=parts,
                    load_seconds=round(seconds, 1),
                    compact_seconds=round(compact_seconds, 1),
                    compacted_partitions=len(due),
                    as_written=written,
                    compacted=compacted,
                    against_smallest=against,
                )
            )
    finally:
        await conn.close()
        if small is not None:
            await small.close()
    return out, extra


def server_label(server: dict[str, str]) -> str:
    """'own Postgres, shared_buffers 6015MB': which server and memory a read row was measured on."""
    return f"{server.get('kind', '?')} Postgres, shared_buffers {server.get('shared_buffers', '?')}"


async def run(args: argparse.Namespace) -> list[Row]:
    measures, extra = await measure(args)
    base = measures[0]
    year = datetime.now(UTC).year - 1
    c = base.compacted
    table = sizing_table(c.bytes_per_bar, extra["bytes_per_quote"], year)
    note = settings_note(c.bytes_per_bar, c.heap_per_bar, c.index_per_bar, extra["bytes_per_quote"])
    note += f"; as the sweeps write it, before its month is compacted: {base.as_written.bytes_per_bar:.0f} B"
    log("storage: sizing table\n" + note + "\n" + table)
    details = {**extra, "sizes": [asdict(m) for m in measures], "sizing_table": table, "sizing_note": note}
    rows = [
        Row(
            benchmark="storage: bytes per stored bar (with its index)",
            figure=f"{c.bytes_per_bar:.0f} B ({c.heap_per_bar:.0f} heap + {c.index_per_bar:.0f} index)",
            baseline=f"{base.as_written.bytes_per_bar:.0f} B before its month is compacted",
            ratio=None,
            target="n/a (shown)",
            met=None,
            details=details,
        )
    ]
    for m in measures[1:]:
        assert m.against_smallest is not None
        pair = m.against_smallest
        ratio = float(pair["ratio"])
        alone = m.compacted.random_day["p50_ms"] / c.random_day["p50_ms"]
        written = m.as_written.random_day["p50_ms"] / base.as_written.random_day["p50_ms"]
        gb = (m.compacted.heap_bytes + m.compacted.index_bytes) / 1e9
        rows.append(
            Row(
                benchmark=(
                    f"storage: one-day 1m history read p50, {si(m.bars)} vs {si(base.bars)} bars "
                    f"({server_label(extra['server'])})"
                ),
                figure=f"{pair['large']['p50_ms']:.2f} ms ({gb:.1f} GB)",
                baseline=f"{pair['small']['p50_ms']:.2f} ms (alternated)",
                ratio=ratio,
                target=f"<= {P50_TARGET}x",
                met=ratio <= P50_TARGET,
                details={
                    "alternated": pair,
                    "alone_ratio": round(alone, 3),
                    "alone": {
                        "large_p50_ms": m.compacted.random_day["p50_ms"],
                        "small_p50_ms": c.random_day["p50_ms"],
                    },
                    "uncompacted_ratio": round(written, 3),
                    "large": asdict(m),
                    "small": asdict(base),
                    "skipped": extra["skipped"],
                },
            )
        )
    if extra["skipped"]:
        rows.append(
            Row(
                benchmark="storage: the largest size",
                figure="skipped",
                baseline="",
                ratio=None,
                target="n/a",
                met=None,
                details={"why": extra["skipped"]},
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure at 1M bars only and print the sizing table (README, Storage growth)."""
    import asyncio

    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_storage", description=main.__doc__)
    p.add_argument("--storage-symbols", type=int, default=500)
    p.add_argument("--storage-sizes", default="1M")
    p.add_argument("--storage-reads", type=int, default=500)
    p.add_argument("--storage-postgres", choices=["own", "shared"], default="own")
    args = p.parse_args(argv)
    rows = asyncio.run(run(args))
    details = rows[0].details
    print(details["sizing_note"])
    print()
    print(details["sizing_table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
