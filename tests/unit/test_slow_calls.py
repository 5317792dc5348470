"""Slow provider calls log a WARNING in the task's log; with tracing on, every call is a span."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

from market_data.policy import parse_policy
from market_data.policy.schema import Policy, SyntheticFaults
from market_data.providers.base import BarRequest
from market_data.providers.errors import ServerError
from market_data.providers.synthetic import SyntheticProvider
from market_data.records import Interval
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.registry.slow_calls import (
    MAX_LOGGED_SYMBOLS,
    MAX_SPAN_ITEMS,
    trace_provider_call,
    tracing_enabled,
)

LOGGER = "market_data.registry.slow_calls"
POLICY = parse_policy(
    '[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n'
    '[providers.synthetic]\nkind = "synthetic"\npriority = 1\n'
    '[slo]\nslow_call = "50ms"\n'
)
SYMBOLS = tuple(f"S{i:03d}" for i in range(120))
REQUEST = BarRequest(
    symbols=SYMBOLS,
    exchange_mic="XNYS",
    interval=Interval.M1,
    start=datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
    end=datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
)


# "fast" against a threshold no call reaches, even on a loaded machine
PATIENT_POLICY = parse_policy(
    '[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n'
    '[providers.synthetic]\nkind = "synthetic"\npriority = 1\n'
    '[slo]\nslow_call = "60s"\n'
)


def registry(policy: Policy = POLICY, **faults: object) -> ProviderRegistry:
    """A registry over one synthetic provider with the given faults (one call for 120 symbols)."""
    provider = SyntheticProvider("synthetic", SyntheticFaults(symbols_per_request=200, **faults))  # type: ignore[arg-type]
    return ProviderRegistry(policy, {"synthetic": provider}, retry_wait=lambda _s: 0.0)


def slow_call_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, as Airflow turns it on ([traces] otel_on): a global SDK TracerProvider, here
    exporting to memory. OpenTelemetry allows one global provider per process, so the globals
    are reset for the test and restored after it (what opentelemetry's own test utilities do)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


# --- the WARNING in the task's log --------------------------------------------------------------
async def test_a_slow_call_logs_a_warning_naming_provider_capability_symbols_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    outcome = await registry(latency_ms=120).fetch_bars(REQUEST)
    assert outcome.provider == "synthetic" and outcome.value

    [record] = slow_call_records(caplog)
    message = record.getMessage()
    assert message.startswith("slow provider call: synthetic bars:1m took "), message
    took = float(message.split(" took ")[1].split(" s ")[0])
    assert took >= 0.12
    assert "(slo.slow_call 0.050 s), ok;" in message
    # a 120-symbol batch names its first symbols and counts the rest
    named = ",".join(SYMBOLS[:MAX_LOGGED_SYMBOLS])
    assert f"symbols={named},... (+{120 - MAX_LOGGED_SYMBOLS} more, 120 in all)" in message
    assert SYMBOLS[MAX_LOGGED_SYMBOLS] not in message
    assert "exchange_mic=XNYS interval=1m start=2026-11-23T14:30:00+00:00 end=2026-11-23T15:00:00+00:00" in (
        message
    )


async def test_a_fast_call_logs_nothing_and_builds_no_parameters(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await registry(PATIENT_POLICY, latency_ms=0).fetch_quotes(["AAPL", "MSFT"], "XNYS")
    built: list[int] = []
    for _ in range(20):
        with trace_provider_call(
            "synthetic", "quotes", threshold_s=60.0, params=lambda: built.append(1) or {}
        ):
            await asyncio.sleep(0)
    assert slow_call_records(caplog) == []
    assert built == []  # lazy parameters are not even built while tracing is off
    assert not tracing_enabled()


async def test_slow_failing_calls_are_logged_with_their_error_which_passes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(AllProvidersFailed):
        await registry(latency_ms=80, error_rate=1.0).fetch_quotes(["AAPL"], "XNYS")
    records = slow_call_records(caplog)
    assert len(records) == 3  # the first attempt and its two retries, each slow
    for r in records:
        assert "synthetic quotes took" in r.getMessage() and "error ServerError(" in r.getMessage()
        assert "symbols=AAPL exchange_mic=XNYS" in r.getMessage()

    caplog.clear()
    with pytest.raises(ServerError, match="synthetic outage"):
        with trace_provider_call("finnhub", "bars:5m", threshold_s=0.01, params={"symbols": ["AAPL"]}):
            await asyncio.sleep(0.03)
            raise ServerError("finnhub", "synthetic outage", status=503)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            with trace_provider_call("yahoo", "quotes", threshold_s=0.01):
                await asyncio.sleep(5)
    failed, cancelled = (r.getMessage() for r in slow_call_records(caplog))
    assert "finnhub bars:5m" in failed and "synthetic outage" in failed and "symbols=AAPL" in failed
    assert "yahoo quotes" in cancelled and ", cancelled;" in cancelled


# --- OpenTelemetry spans ------------------------------------------------------------------------
async def test_with_tracing_on_each_provider_call_is_a_span_under_the_tasks_span(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    assert tracing_enabled()
    reg = registry(latency_ms=60)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("worker.run_batch") as task_span:
        await reg.fetch_bars(REQUEST)
        await reg.fetch_quotes(["AAPL"], "XNYS")
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert set(by_name) == {"provider bars:1m", "provider quotes", "worker.run_batch"}
    bars, quotes = by_name["provider bars:1m"], by_name["provider quotes"]
    for span in (bars, quotes):
        assert span.parent is not None and span.parent.span_id == task_span.get_span_context().span_id
        assert span.kind is trace.SpanKind.CLIENT and span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None and span.attributes["market_data.provider"] == "synthetic"
        assert span.attributes["market_data.outcome"] == "ok" and span.attributes["market_data.slow"] is True
    assert bars.attributes is not None
    assert bars.attributes["market_data.capability"] == "bars:1m"
    assert (
        bars.attributes["market_data.symbols"] == SYMBOLS[:MAX_SPAN_ITEMS]  # bounded; the count says 120
        and bars.attributes["market_data.symbols_count"] == 120
    )
    assert bars.attributes["market_data.interval"] == "1m"
    assert bars.attributes["market_data.start"] == "2026-11-23T14:30:00+00:00"
    assert bars.end_time is not None and bars.start_time is not None
    assert (bars.end_time - bars.start_time) / 1e9 >= 0.06
    assert len(slow_call_records(caplog)) == 2  # spans do not replace the WARNING


async def test_with_tracing_on_fast_and_failed_calls_are_spans_too(spans: InMemorySpanExporter) -> None:
    with trace_provider_call("synthetic", "quotes", threshold_s=5.0, params={"symbols": ("AAPL",)}):
        pass
    with pytest.raises(ServerError):
        with trace_provider_call("finnhub", "bars:5m", threshold_s=5.0):
            raise ServerError("finnhub", "synthetic outage", status=503)
    fast, failed = spans.get_finished_spans()
    assert fast.attributes is not None and fast.attributes["market_data.slow"] is False
    assert fast.attributes["market_data.symbols_count"] == 1
    assert failed.attributes is not None and failed.attributes["market_data.outcome"] == "error"
    assert failed.status.status_code is StatusCode.ERROR and "synthetic outage" in (
        failed.status.description or ""
    )
    assert [e.name for e in failed.events] == ["exception"]
