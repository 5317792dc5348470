"""With Airflow's own tracing on ([traces] otel_on), each provider call of a sweep is a span."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from market_data.policy import load_policy_file
from tests.conftest import truncate_data

ROOT = Path(__file__).resolve().parents[2]


async def t0_symbols(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT symbol FROM symbol_universe WHERE tier = 'T0' AND active")
    finally:
        await conn.close()
    return sorted(r["symbol"] for r in rows)


def test_a_traced_sweep_makes_one_span_per_provider_call(dagbag, md_dsn, redis_client) -> None:
    # redis_client: the provider health this sweep shares through Redis is wiped afterwards
    asyncio.run(truncate_data(md_dsn))
    expected_symbols = asyncio.run(t0_symbols(md_dsn))
    # Airflow's settings as an operator sets them; the console exporter keeps the test offline
    env = {**os.environ, "AIRFLOW__TRACES__OTEL_ON": "True", "OTEL_TRACES_EXPORTER": "console"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.dags.traced_sweep", str(ROOT / "dags")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SPANS ")), "")
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(line.removeprefix("SPANS "))
    assert got["state"] == "success"
    names = [s["name"] for s in got["spans"]]
    assert "dag_run.md_sweep_t0" in names and "task_run.sweep[0]" in names  # Airflow's own spans

    provider_spans = [s for s in got["spans"] if s["name"].startswith("provider ")]
    assert provider_spans, names
    providers = set(load_policy_file(ROOT / "include" / "policy.toml").policy.providers)
    for span in provider_spans:
        a = span["attributes"]
        assert span["name"] == f"provider {a['market_data.capability']}"
        assert a["market_data.provider"] in providers  # whichever the registry picked
        assert a["market_data.outcome"] in ("ok", "error") and isinstance(a["market_data.slow"], bool)
        assert a["market_data.symbols_count"] == len(a["market_data.symbols"])
    # one answered bars call per batch: together they cover each T0 symbol once
    answered = [
        s["attributes"]
        for s in provider_spans
        if s["name"] == "provider bars:1m" and s["attributes"]["market_data.outcome"] == "ok"
    ]
    assert sorted(sym for a in answered for sym in a["market_data.symbols"]) == expected_symbols
