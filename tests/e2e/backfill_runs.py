"""What the md_backfill end-to-end tests share: their policy, queueing jobs, triggering runs."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from market_data import db
from market_data.backfill.enqueue import BackfillRange, enqueue_backfills
from market_data.policy import parse_policy
from market_data.records import Interval, Tier
from tests.e2e.airflow_stack import AirflowStack

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
MON = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
POOL_SLOTS = 2


def e2e_policy(
    outage: tuple[datetime, datetime] | None = None,
    *,
    batch_size: int = 2,
    latency_ms: int = 400,
    max_concurrency: int = 8,
) -> str:
    """Small batches, one fast retry, slow calls (so batches overlap), only the synthetic provider;
    optionally an outage window (wall clock) of that provider. `max_concurrency` 1 runs a batch's
    jobs one after the other."""
    doc = DEFAULT
    for pattern, repl in [
        (r"^batch_size = 20$", f"batch_size = {batch_size}"),
        (r"^retries = 3$", "retries = 1"),
        (r'^retry_delay = "30s"$', 'retry_delay = "2s"'),
        (r'^cadence = "5m"$', 'cadence = "1d"'),  # one scheduled run at unpause, none during the test
        (r'(\[providers\.synthetic_backup\]\nkind = "synthetic"\n)enabled = true', r"\1enabled = false"),
        (r"^latency_ms = 0$", f"latency_ms = {latency_ms}"),
        (r"^max_concurrency = 8$", f"max_concurrency = {max_concurrency}"),
    ]:
        doc, n = re.subn(pattern, repl, doc, count=1, flags=re.M)
        assert n == 1, pattern
    if outage is not None:
        window = f"outages = [{{start = {outage[0].isoformat()}, end = {outage[1].isoformat()}}}]"
        doc, n = re.subn(r"^outages = \[\]$", window, doc, count=1, flags=re.M)
        assert n == 1
    parse_policy(doc)
    return doc


def prepare(stack: AirflowStack) -> None:
    """Pools (the synthetic provider's: POOL_SLOTS), the DAGs serialized, md_backfill unpaused."""
    for args in (
        ("pools", "import", str(ROOT / "include" / "pools.json")),
        ("pools", "set", "provider_synthetic", str(POOL_SLOTS), "e2e: two batches at a time"),
        ("dags", "reserialize"),
        ("dags", "unpause", "md_backfill"),
    ):
        out = stack.cli(*args)
        assert out.returncode == 0, out.stderr[-2000:]


async def _run(dsn: str, fn):
    c = await db.connect(dsn)
    try:
        return await fn(c)
    finally:
        await c.close()


def sql(dsn: str, fn):
    return asyncio.run(_run(dsn, fn))


def enqueue(dsn: str, symbols: list[str], offset_minutes: int) -> None:
    policy = parse_policy(DEFAULT)

    async def go(c):
        tiers = dict(await c.fetch("SELECT symbol, tier FROM symbol_universe"))
        await enqueue_backfills(
            c,
            [
                BackfillRange(
                    symbol=s,
                    interval=Interval.M1,
                    start=MON + timedelta(minutes=offset_minutes),
                    end=MON + timedelta(minutes=offset_minutes + 20),
                    tier=Tier(tiers[s]),
                )
                for s in symbols
            ],
            policy,
        )

    sql(dsn, go)


def max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def peak_batches(dsn: str, run_id: str, batches: int) -> int:
    """Most of the run's synthetic batches that ran at once (their own start and end times);
    asserts the run ran `batches` of them, each to its end."""
    spans = [
        (r["started_at"], r["finished_at"])
        for r in sql(
            dsn,
            lambda c: c.fetch(
                """SELECT started_at, finished_at FROM backfill_batch_runs
                   WHERE provider = 'synthetic' AND run_id = $1""",
                run_id,
            ),
        )
    ]
    assert len(spans) == batches and all(e is not None for _, e in spans), spans
    return max_overlap(spans)


def settle_scheduled_runs(stack: AirflowStack) -> None:
    """Let the one scheduled run that unpausing creates finish before the test's own runs."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = stack.api("GET", "/dags/md_backfill/dagRuns")["dag_runs"]
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            return
        time.sleep(2)


def trigger(stack: AirflowStack) -> str:
    return str(stack.api("POST", "/dags/md_backfill/dagRuns", {"logical_date": None})["dag_run_id"])
