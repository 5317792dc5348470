"""Slow provider calls become bounded OpenTelemetry traces; fast calls leave nothing."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market_data import tracing
from market_data.providers.base import BarRequest
from market_data.providers.errors import ServerError
from market_data.records import Interval
from market_data.tracing import SlowCallRecorder, bar_request_params

REQUEST = BarRequest(
    symbols=tuple(f"S{i:03d}" for i in range(120)),
    exchange_mic="XNYS",
    interval=Interval.M1,
    start=datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
    end=datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
)


@pytest.fixture
def recorder(tmp_path: Path) -> SlowCallRecorder:
    r = SlowCallRecorder(tmp_path / "traces", max_file_bytes=64 * 1024, max_files=2)
    yield r
    r.shutdown()


async def test_a_slow_call_is_recorded_with_its_context(recorder: SlowCallRecorder, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "md_sweep_t0")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "sweep")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2026-11-23T15:00:00+00:00")
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")
    with recorder.trace("synthetic", "bars:1m", threshold_s=0.05, params=lambda: bar_request_params(REQUEST)):
        await asyncio.sleep(0.08)

    [rec] = recorder.read()
    assert (rec.provider, rec.capability, rec.outcome, rec.error) == ("synthetic", "bars:1m", "ok", None)
    assert 80 <= rec.duration_ms < 2000 and rec.threshold_ms == 50.0
    assert rec.at > rec.started_at
    assert rec.params["exchange_mic"] == "XNYS" and rec.params["interval"] == "1m"
    assert (
        rec.params["start"] == "2026-11-23T14:30:00+00:00"
        and rec.params["end"] == "2026-11-23T15:00:00+00:00"
    )
    # a 120-symbol request keeps its first 20 symbols and the total
    assert rec.params["symbols"] == [f"S{i:03d}" for i in range(20)] and rec.params["symbols_count"] == 120
    assert rec.context["dag_id"] == "md_sweep_t0" and rec.context["task_id"] == "sweep"
    assert rec.context["run_id"].startswith("scheduled__") and rec.context["try_number"] == "2"
    assert rec.context["pid"] == str(os.getpid()) and rec.context["host"]
    assert len(rec.trace_id) == 32 and len(rec.span_id) == 16 and int(rec.trace_id, 16)
    # one JSON object per line on disk
    [line] = (recorder.store.path).read_text().splitlines()
    assert json.loads(line)["provider"] == "synthetic"


async def test_fast_calls_leave_nothing_and_build_no_tracer(recorder: SlowCallRecorder) -> None:
    built = []
    for _ in range(50):
        with recorder.trace("synthetic", "quotes", threshold_s=1.0, params=lambda: built.append(1) or {}):
            await asyncio.sleep(0)
    assert (
        recorder.record(provider="synthetic", capability="quotes", duration_s=0.5, threshold_s=2.0) is False
    )
    assert recorder.read() == []
    assert built == []  # lazy parameters are not even built
    assert recorder._tracer is None  # the OpenTelemetry SDK was never set up
    assert not recorder.store.path.exists()


async def test_a_failing_slow_call_is_recorded_and_its_error_passes_through(
    recorder: SlowCallRecorder,
) -> None:
    with pytest.raises(ServerError, match="synthetic outage"):
        with recorder.trace("finnhub", "bars:5m", threshold_s=0.01, params={"symbols": ["AAPL"]}):
            await asyncio.sleep(0.03)
            raise ServerError("finnhub", "synthetic outage", status=503)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.05):
            with recorder.trace("yahoo", "quotes", threshold_s=0.01):
                await asyncio.sleep(5)
    cancelled, failed = recorder.read()
    assert failed.outcome == "error" and failed.provider == "finnhub"
    assert failed.error is not None and "ServerError" in failed.error and "synthetic outage" in failed.error
    assert failed.params == {"symbols": ["AAPL"], "symbols_count": 1}
    assert cancelled.outcome == "cancelled" and cancelled.provider == "yahoo"


def test_record_after_the_fact_and_filters(recorder: SlowCallRecorder) -> None:
    assert recorder.record(
        provider="alpaca",
        capability="bars:1h",
        duration_s=3.2,
        threshold_s=2.0,
        params={"symbols": ("MSFT",)},
    )
    assert recorder.record(
        provider="yahoo", capability="quotes", duration_s=2.5, threshold_s=2.0, error="HTTP 504"
    )
    assert [r.provider for r in recorder.read()] == ["yahoo", "alpaca"]
    assert [r.provider for r in recorder.read(provider="alpaca")] == ["alpaca"]
    assert [r.capability for r in recorder.read(capability="quotes")] == ["quotes"]
    assert recorder.read(limit=1)[0].provider == "yahoo"
    [alpaca] = recorder.read(provider="alpaca")
    assert alpaca.duration_ms == pytest.approx(3200.0, abs=0.01)
    assert recorder.read(provider="yahoo")[0].error == "HTTP 504"


def test_storage_stays_bounded(tmp_path: Path) -> None:
    r = SlowCallRecorder(tmp_path, max_file_bytes=4096, max_files=3)
    try:
        huge = {f"p{i}": "x" * 10_000 for i in range(40)}  # capped per value and per record
        for i in range(300):
            assert r.record(
                provider=f"p{i}", capability="bars:1m", duration_s=3.0, threshold_s=2.0, params=huge
            )
        files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
        assert files == ["slow_calls.jsonl", "slow_calls.jsonl.1", "slow_calls.jsonl.2"]
        assert sum((tmp_path / f).stat().st_size for f in files) <= 3 * 4096
        assert all((tmp_path / f).stat().st_size <= 4096 for f in files)
        kept = r.read(limit=1000)
        assert kept[0].provider == "p299"  # the newest survive, newest first
        assert [int(k.provider[1:]) for k in kept] == list(range(299, 299 - len(kept), -1))
        assert len(kept[0].params) <= tracing.MAX_PARAMS + 1
        assert all(len(v) <= tracing.MAX_TEXT for v in kept[0].params.values() if isinstance(v, str))
    finally:
        r.shutdown()


def test_an_unwritable_store_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    r = SlowCallRecorder(blocker / "traces")
    try:
        assert r.record(provider="synthetic", capability="quotes", duration_s=3.0, threshold_s=2.0) is False
        with r.trace("synthetic", "quotes", threshold_s=0.0):
            pass
        assert r.read() == []
    finally:
        r.shutdown()


def test_a_torn_line_is_skipped(recorder: SlowCallRecorder) -> None:
    assert recorder.record(provider="synthetic", capability="quotes", duration_s=3.0, threshold_s=2.0)
    with recorder.store.path.open("ab") as fh:
        fh.write(b'{"at": "2026-11-23T15:00:00Z", "provid')
    assert [r.provider for r in recorder.read()] == ["synthetic"]


def test_the_process_recorder_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MARKET_DATA_TRACE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("MARKET_DATA_TRACE_FILE_KB", "8")
    monkeypatch.setenv("MARKET_DATA_TRACE_FILES", "2")
    tracing.set_slow_call_recorder(None)
    try:
        rec = tracing.slow_call_recorder()
        assert rec.store is not None
        assert (rec.store.directory, rec.store.max_file_bytes, rec.store.max_files) == (
            tmp_path / "env",
            8192,
            2,
        )
        assert (
            tracing.record_slow_call(
                provider="synthetic", capability="quotes", duration_s=0.1, threshold_s=2.0
            )
            is False
        )
        assert tracing.record_slow_call(
            provider="synthetic", capability="quotes", duration_s=2.1, threshold_s=2.0
        )
        with pytest.raises(KeyError):
            with tracing.trace_provider_call(
                "synthetic", "bars:1m", threshold_s=0.0, params={"symbols": ["A"]}
            ):
                raise KeyError("boom")
        assert [r.capability for r in tracing.read_slow_calls()] == ["bars:1m", "quotes"]
        monkeypatch.setenv("MARKET_DATA_TRACE_DIR", "off")
        tracing.set_slow_call_recorder(None)
        assert tracing.slow_call_recorder().enabled is False
        assert (
            tracing.record_slow_call(
                provider="synthetic", capability="quotes", duration_s=9.0, threshold_s=2.0
            )
            is False
        )
    finally:
        tracing.set_slow_call_recorder(None)
