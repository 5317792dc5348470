"""Provider calls where operators look: a WARNING in the task's log when a call is slow, and an
OpenTelemetry span per call when Airflow traces.

The registry wraps each provider call:

    with trace_provider_call(name, capability, threshold_s=policy.slo.slow_call.seconds,
                             params=lambda: bar_request_params(request)):
        value = await call(adapter)

- A call that takes longer than `threshold_s` (the policy's `slo.slow_call`) logs one WARNING
  on this module's logger; in an Airflow task it lands in the task's log (Airflow UI):
  provider, capability, duration, threshold, outcome and the request (symbols, abbreviated past
  `MAX_LOGGED_SYMBOLS`; exchange, interval, range).
- When Airflow traces (`[traces] otel_on = True`, e.g. `AIRFLOW__TRACES__OTEL_ON=True`, with the
  exporter set by the standard `OTEL_EXPORTER_OTLP_*` / `OTEL_TRACES_EXPORTER` variables),
  Airflow installs a global TracerProvider; each call then becomes a span
  `provider <capability>` under the current span (the task's), with the same attributes. Without
  it no span is made and the parameters of a fast call are not even built.

Neither ever raises into the caller; an exception of the wrapped block passes through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from opentelemetry import trace

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from market_data.providers.base import BarRequest

log = logging.getLogger(__name__)

ParamsArg = Mapping[str, object] | Callable[[], Mapping[str, object]] | None
"""A call's parameters, or a callable that builds them (only called when they are needed)."""

MAX_LOGGED_SYMBOLS: Final = 10
"""Symbols named in a slow-call WARNING; the rest are counted."""
MAX_SPAN_ITEMS: Final = 100
"""Items kept of a list attribute (symbols) on a span; `<name>_count` keeps the total."""
MAX_TEXT: Final = 200
"""Characters kept of a parameter value or an error text."""
ATTRIBUTE_PREFIX: Final = "market_data."


def bar_request_params(request: BarRequest) -> dict[str, object]:
    """The parameters of a bars call worth reporting."""
    return {
        "symbols": request.symbols,
        "exchange_mic": request.exchange_mic,
        "interval": request.interval,
        "start": request.start,
        "end": request.end,
    }


def quote_request_params(symbols: Sequence[str], exchange_mic: str) -> dict[str, object]:
    """The parameters of a quotes call worth reporting."""
    return {"symbols": tuple(symbols), "exchange_mic": exchange_mic}


def tracing_enabled() -> bool:
    """True when a TracerProvider is installed (Airflow installs one when `[traces] otel_on`)."""
    return _tracer() is not None


def _tracer() -> trace.Tracer | None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None  # OpenTelemetry's default until someone installs a provider: tracing is off
    return _tracer_of(provider)


@functools.lru_cache(maxsize=2)
def _tracer_of(provider: trace.TracerProvider) -> trace.Tracer:
    return provider.get_tracer(__name__)


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return str(value.value)[:MAX_TEXT]
    return str(value)[:MAX_TEXT]


def _items(value: object) -> list[str] | None:
    """A list parameter's items as text (sets sorted), or None for a single value."""
    if isinstance(value, set | frozenset):
        return sorted(_text(v) for v in value)
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return None


def describe_params(params: Mapping[str, object]) -> str:
    """`key=value` pairs for a log line; long lists name their first items and count the rest."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        items = _items(value)
        if items is None:
            parts.append(f"{key}={_text(value)}")
            continue
        more = len(items) - MAX_LOGGED_SYMBOLS
        shown = ",".join(items[:MAX_LOGGED_SYMBOLS])
        parts.append(f"{key}={shown}" + (f",... (+{more} more, {len(items)} in all)" if more > 0 else ""))
    return " ".join(parts)


def describe_outcome(failure: BaseException | None) -> tuple[str, str]:
    """(ok | error | cancelled, text) for how a call ended; the text names an error's class,
    code and message."""
    if failure is None:
        return "ok", "ok"
    if isinstance(failure, asyncio.CancelledError):
        return "cancelled", "cancelled"
    code = getattr(failure, "code", None)
    head = f"{type(failure).__name__}({code})" if code else type(failure).__name__
    return "error", f"error {head}: {str(failure)[:MAX_TEXT]}"


def span_attributes(
    provider: str, capability: str, params: Mapping[str, object]
) -> dict[str, AttributeValue]:
    """The attributes of a provider call's span (lists bounded, values as OpenTelemetry types)."""
    out: dict[str, AttributeValue] = {
        ATTRIBUTE_PREFIX + "provider": provider,
        ATTRIBUTE_PREFIX + "capability": capability,
    }
    for key, value in params.items():
        name = ATTRIBUTE_PREFIX + str(key)
        if value is None:
            continue
        items = _items(value)
        if items is not None:
            out[name] = items[:MAX_SPAN_ITEMS]
            out[name + "_count"] = len(items)
        elif isinstance(value, bool | int | float) and not isinstance(value, enum.Enum):
            out[name] = value
        else:
            out[name] = _text(value)
    return out


def _resolve(params: ParamsArg) -> Mapping[str, object]:
    if params is None:
        return {}
    return params() if callable(params) else params


def _start_span(provider: str, capability: str, params: ParamsArg) -> trace.Span | None:
    try:
        tracer = _tracer()
        if tracer is None:
            return None
        return tracer.start_span(
            f"provider {capability}",
            kind=trace.SpanKind.CLIENT,
            attributes=span_attributes(provider, capability, _resolve(params)),
        )
    except Exception:  # tracing must never break a provider call
        log.debug("provider-call span not started", exc_info=True)
        return None


def _report(
    span: trace.Span | None,
    provider: str,
    capability: str,
    params: ParamsArg,
    duration_s: float,
    threshold_s: float,
    failure: BaseException | None,
) -> None:
    slow = duration_s > threshold_s
    try:
        outcome, outcome_text = describe_outcome(failure)
        if slow:
            log.warning(
                "slow provider call: %s %s took %.3f s (slo.slow_call %.3f s), %s; %s",
                provider,
                capability,
                duration_s,
                threshold_s,
                outcome_text,
                describe_params(_resolve(params)),
            )
        if span is not None:
            span.set_attribute(ATTRIBUTE_PREFIX + "slow", slow)
            span.set_attribute(ATTRIBUTE_PREFIX + "outcome", outcome)
    except Exception:  # reporting must never break a provider call
        log.debug("slow provider call not reported", exc_info=True)
    finally:
        if span is not None:
            span.end()


@contextlib.contextmanager
def trace_provider_call(
    provider: str, capability: str, *, threshold_s: float, params: ParamsArg = None
) -> Iterator[None]:
    """Time a provider call (sync, or `await` inside the block): a span when Airflow traces, a
    WARNING when it took longer than `threshold_s`. An exception of the block is re-raised."""
    span = _start_span(provider, capability, params)
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        if span is None:
            yield
        else:
            # current while the call runs (spans the adapter makes nest under it); an Exception
            # is recorded on it and sets its status to ERROR
            with trace.use_span(span, end_on_exit=False):
                yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _report(span, provider, capability, params, time.perf_counter() - started, threshold_s, failure)


__all__ = [
    "ParamsArg",
    "bar_request_params",
    "quote_request_params",
    "trace_provider_call",
    "tracing_enabled",
]
