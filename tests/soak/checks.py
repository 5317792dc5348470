"""What the soak checks after the drain, one row each of the table it prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import psutil

from tests.soak.faults import Fault
from tests.soak.load import HttpReader, Ops, Reference, WsClient
from tests.soak.stack import ROOT, SoakStack, StatsdTap

RSS_GROWTH_LIMIT = 0.20


@dataclass
class Row:
    check: str
    ok: bool
    result: str
    detail: str = ""


def table(rows: list[Row]) -> str:
    widths = [max(len(r.check) for r in rows), max(len(r.result) for r in rows)]
    lines = [
        f"| {'check':<{widths[0]}} | ok  | {'result':<{widths[1]}} | detail",
        f"|{'-' * (widths[0] + 2)}|-----|{'-' * (widths[1] + 2)}|-------",
    ]
    for r in rows:
        lines.append(
            f"| {r.check:<{widths[0]}} | {'yes' if r.ok else 'NO '} | {r.result:<{widths[1]}} | {r.detail}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
def integrity(stack: SoakStack) -> Row:
    proc = subprocess.run(
        [str(ROOT / "dev"), "integrity", "--json", "--since", "1d"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        body = json.loads(proc.stdout)
        failed = [f"{c['name']}: {c.get('detail', '')}" for c in body["checks"] if c["status"] == "failed"]
        skipped = [c["name"] for c in body["checks"] if c["status"] == "skipped"]
        if skipped:
            failed.append(f"skipped: {', '.join(skipped)}")
    except (json.JSONDecodeError, KeyError):
        failed = [proc.stdout[-300:] + proc.stderr[-300:]]
    return Row(
        "./dev integrity",
        proc.returncode == 0,
        "OK" if proc.returncode == 0 else f"exit {proc.returncode}",
        "; ".join(failed)[:300],
    )


async def missing_bars(
    stack: SoakStack, symbols: list[str], start: datetime, end: datetime
) -> dict[str, int]:
    """symbol -> bars of [start, end) expected and neither stored nor confirmed empty (the coverage API)."""
    out: dict[str, int] = {}
    params = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
        for s in symbols:
            r = await http.get(f"/stocks/{s}/coverage", params=params)
            out[s] = r.json()["totals"]["missing"] if r.status_code == 200 else -1
    return out


async def queued_jobs(stack: SoakStack) -> int:
    conn = await asyncpg.connect(stack.dsn)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM backfill_jobs WHERE status IN ('queued', 'running')"
        )
    finally:
        await conn.close()
    return n


async def drain(
    stack: SoakStack, symbols: list[str], start: datetime, end: datetime, within: float
) -> tuple[dict[str, int], int, float]:
    """Wait until nothing is missing and no backfill job is left (or `within` s): (missing, jobs, s)."""
    t0 = time.time()
    while True:
        missing = await missing_bars(stack, symbols, start, end)
        jobs = await queued_jobs(stack)
        if (not any(missing.values()) and jobs == 0) or time.time() - t0 > within:
            return missing, jobs, time.time() - t0
        await asyncio.sleep(20)


async def revisions(stack: SoakStack, clients: list[WsClient], start: datetime) -> Row:
    conn = await asyncpg.connect(stack.dsn)
    try:
        revised = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM bars WHERE interval = '1m' AND ts >= $1 "
            "GROUP BY symbol, ts HAVING count(*) > 1) v",
            start,
        )
        wrong = 0
        seen = {(m["symbol"], m["ts"], m["version"]) for c in clients for m in c.revisions}
        for symbol, ts, version in seen:
            n = await conn.fetchval(
                "SELECT count(*) FROM bars WHERE symbol = $1 AND interval = '1m' AND ts = $2",
                symbol,
                datetime.fromisoformat(ts),
            )
            wrong += n < version
    finally:
        await conn.close()
    ok = wrong == 0 and revised > 0
    return Row(
        "revisions stored as versions",
        ok,
        f"{revised} bars revised",
        f"{len(seen)} revisions on the WebSockets, {wrong} without their stored version",
    )


def ws_delivery(clients: list[WsClient], ref: Reference, load_end: float) -> Row:
    notified = [(s, a, t) for s, iv, a, t in ref.notified if iv == "1m" and t <= load_end]
    blind = ref.blind
    details, bad = [], 0
    for c in clients:
        if c.connected_at is None:
            bad += 1
            details.append(f"{c.name}: never connected")
            continue
        missed = uncovered = 0
        for symbol, as_of, t in notified:
            if t < c.connected_at or (symbol, as_of) in c.bars or any(a - 1 <= t <= b + 1 for a, b in blind):
                continue
            missed += 1
            if not any(g.start - 1 <= t <= (g.end if g.end is not None else 0) + 1 for g in c.gaps):
                uncovered += 1
        bad += uncovered
        details.append(
            f"{c.name}: {len(c.bars)} bars, {missed} missed ({missed - uncovered} covered by "
            f"{c.resyncs} resyncs/{c.connects - 1} reconnects + snapshots)"
        )
    return Row(
        "every WS client got every bar or a resync+snapshot",
        bad == 0,
        f"{len(notified)} notified, {bad} uncovered",
        "; ".join(details)[:600],
    )


def http_errors(readers: list[HttpReader], ops: Ops, faults: list[Fault]) -> Row:
    statuses = [s for r in readers for s in r.statuses] + ops.calls
    other_5xx = [(t, p, c) for t, p, c in statuses if c >= 500 and c != 503]
    n503 = sum(1 for _, _, c in statuses if c == 503)
    none = sum(1 for _, _, c in statuses if c == 0)
    by_path: dict[str, int] = {}
    for _, p, c in other_5xx:
        by_path[f"{p} {c}"] = by_path.get(f"{p} {c}", 0) + 1
    return Row(
        "no 5xx but the documented 503s",
        not other_5xx,
        f"{len(statuses)} requests, {len(other_5xx)} other 5xx",
        f"{n503} x 503 (outages), {none} without an answer (an API process killed mid-request); {by_path}"[
            :400
        ],
    )


@dataclass
class RssSample:
    t: float
    name: str
    pid: int
    rss: int


async def sample_rss(
    stack: SoakStack, samples: list[RssSample], stop: asyncio.Event, every: float = 10.0
) -> None:
    while not stop.is_set():
        now = time.time()
        for name, pid in stack.components().items():
            try:
                p = psutil.Process(pid)
                samples.append(RssSample(now, name, pid, p.memory_info().rss))
                if name == "api":  # api.serve's workers (a killed one is replaced by a new pid)
                    for child in p.children():
                        if child.status() != psutil.STATUS_ZOMBIE:
                            samples.append(RssSample(now, "api-worker", child.pid, child.memory_info().rss))
            except psutil.Error:
                continue
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


def rss_growth(samples: list[RssSample], warm_until: float, settle: float = 120.0) -> Row:
    by_proc: dict[tuple[str, int], list[RssSample]] = {}
    for s in samples:
        by_proc.setdefault((s.name, s.pid), []).append(s)
    parts, bad = [], 0
    for (name, pid), xs in sorted(by_proc.items()):
        start = max(warm_until, xs[0].t + settle)
        after = [x for x in xs if x.t >= start]
        if len(after) < 3:
            continue  # killed (or started) too close to the end to measure
        base, last = after[0].rss, max(x.rss for x in after[-3:])
        if base <= 0:
            continue
        growth = last / base - 1
        bad += growth >= RSS_GROWTH_LIMIT
        parts.append(f"{name}[{pid}] {base / 2**20:.0f}->{last / 2**20:.0f} MB ({growth:+.0%})")
    return Row(
        "RSS growth after warm-up < 20 %",
        bad == 0 and bool(parts),
        f"{bad} of {len(parts)} processes over",
        "; ".join(parts)[:700],
    )


def provider_limits(tap: StatsdTap, limits: dict[str, int]) -> Row:
    parts, bad = [], 0
    for provider, limit in limits.items():
        peak = tap.max_per_window(provider)
        bad += peak > limit
        parts.append(f"{provider}: peak {peak:.0f} calls in 60 s of {limit}")
    return Row("no provider limit exceeded", bad == 0, f"{bad} over", "; ".join(parts))


def heal_times(faults: list[Fault]) -> list[Row]:
    rows = []
    for f in faults:
        secs = f.heal_seconds
        rows.append(
            Row(
                f"fault: {f.name}",
                secs is not None,
                f"healed in {secs:g} s" if secs is not None else "not healed",
                f.detail[:200],
            )
        )
    return rows


def leftovers(sessions: set[int], stopped_at: float) -> Row:
    """No process of the stack's sessions outlives it (a killed component's children included);
    any found is ended."""
    from tests.e2e.airflow_stack import session_members, stop_sessions

    left = []
    for pid in session_members(sessions, stopped_at):
        with contextlib.suppress(psutil.Error):
            left.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:60]}")
    stop_sessions(sessions, stopped_at)
    return Row(
        "no process left after the stack stopped", not left, f"{len(left)} left", "; ".join(left)[:300]
    )


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
