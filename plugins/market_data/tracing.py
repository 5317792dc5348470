"""Traces of slow provider calls: OpenTelemetry spans kept in a bounded local JSON-lines store.

The registry wraps each provider call; only a call slower than the policy's `slo.slow_call`
becomes a span, with what an operator needs to act on it: provider, capability, parameters
(symbols, exchange, interval, range), duration, threshold, outcome and error, and the Airflow
task that made it (dag, task, run, try) plus host and pid. A fast call costs two clock
reads and a comparison: no span is created, nothing is exported.

    from market_data.tracing import bar_request_params, trace_provider_call

    with trace_provider_call(name, capability, threshold_s=policy.slo.slow_call.seconds,
                             params=lambda: bar_request_params(request)):
        value = await call(adapter)

`record_slow_call(...)` does the same after the fact when the caller already timed the call.
Neither ever raises into the caller (an exception of the wrapped block passes through untouched).

Storage: spans go through the OpenTelemetry SDK (a private `TracerProvider`, always-on sampler,
span limits, a synchronous processor) to an exporter that appends one JSON object per line to
`<MARKET_DATA_TRACE_DIR>/slow_calls.jsonl`. The file rotates by size: before a line would take
it past `MARKET_DATA_TRACE_FILE_KB` KiB it becomes `slow_calls.jsonl.1` (`.1` -> `.2`, ...),
and only `MARKET_DATA_TRACE_FILES` files are kept, so the store never exceeds
FILES x FILE_KB KiB (default 4 x 256 KiB = 1 MiB); each record is capped too (at most
`MAX_PARAMS` parameters, `MAX_ITEMS` items per list plus its total, `MAX_TEXT` characters per
string, `MAX_RECORD_BYTES` per line). Appends and rotations take an exclusive `flock`, so the
task processes of one machine share the store safely. `MARKET_DATA_TRACE_DIR` defaults to
`.state/traces` in the project; `off` disables tracing. Each machine keeps its own store
(point the directory at a shared volume to read every worker's from one place).

`read_slow_calls()` returns the newest records first (tests, and an ops endpoint later).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from market_data.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Tracer

    from market_data.providers.base import BarRequest

log = logging.getLogger(__name__)

TRACE_DIR_ENV = "MARKET_DATA_TRACE_DIR"
TRACE_FILE_KB_ENV = "MARKET_DATA_TRACE_FILE_KB"
TRACE_FILES_ENV = "MARKET_DATA_TRACE_FILES"
DEFAULT_TRACE_DIR = PROJECT_ROOT / ".state" / "traces"
DEFAULT_FILE_KB = 256
DEFAULT_FILES = 4
FILE_NAME = "slow_calls.jsonl"

MAX_PARAMS = 16
"""Parameters kept per record (the first ones, in the caller's order)."""
MAX_ITEMS = 20
"""Items kept of a list parameter (symbols); `<name>_count` keeps the total."""
MAX_TEXT = 200
"""Characters kept of a string (parameter value or list item)."""
MAX_ERROR = 500
MAX_RECORD_BYTES = 8192
"""A longer line drops its parameters (then its error text) rather than the record."""
_WARN_EVERY_SECONDS = 60.0

ParamsArg = Mapping[str, object] | Callable[[], Mapping[str, object]] | None
"""Parameters, or a callable that builds them (only called for a slow call)."""


class SlowCall(msgspec.Struct, kw_only=True):
    """One stored trace of a slow provider call."""

    at: datetime
    """When the call ended (UTC)."""
    started_at: datetime
    provider: str
    capability: str
    """`quotes` or `bars:<interval>`."""
    duration_ms: float
    threshold_ms: float
    outcome: str
    """ok, error or cancelled."""
    error: str | None = None
    params: dict[str, Any] = {}
    context: dict[str, str] = {}
    """Airflow dag_id / task_id / run_id / try_number when the call ran in a task; host, pid."""
    trace_id: str = ""
    span_id: str = ""


# -- bounded storage ----------------------------------------------------------------------------
class RotatingJsonlStore:
    """JSON lines in at most `max_files` files of at most `max_file_bytes` each (shared by processes)."""

    def __init__(
        self, directory: Path, *, max_file_bytes: int, max_files: int, name: str = FILE_NAME
    ) -> None:
        if max_file_bytes < 1024:
            raise ValueError(f"max_file_bytes: at least 1024, got {max_file_bytes}")
        if max_files < 1:
            raise ValueError(f"max_files: at least 1, got {max_files}")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.path = self.directory / name
        self._lock_path = self.directory / f".{name}.lock"
        self._thread_lock = threading.Lock()
        self._next_warning = 0.0

    @property
    def max_total_bytes(self) -> int:
        return self.max_file_bytes * self.max_files

    def files(self) -> list[Path]:
        """Existing files, newest first."""
        paths = [self.path] + [self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.max_files)]
        return [p for p in paths if p.exists()]

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.max_files - 1}")
        if self.max_files == 1:
            self.path.unlink(missing_ok=True)
            return
        oldest.unlink(missing_ok=True)
        for i in range(self.max_files - 2, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    def append(self, line: bytes) -> bool:
        """Append one line (newline added if missing); False when it could not be written."""
        if not line.endswith(b"\n"):
            line += b"\n"
        if len(line) > self.max_file_bytes:
            return False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._locked(exclusive=True):
                try:
                    size = self.path.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size and size + len(line) > self.max_file_bytes:
                    self._rotate()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            return True
        except OSError as exc:
            now = time.monotonic()
            if now >= self._next_warning:
                self._next_warning = now + _WARN_EVERY_SECONDS
                log.warning("slow-call traces not stored in %s: %s", self.directory, exc)
            return False

    def read_lines(self, limit: int) -> list[bytes]:
        """Up to `limit` lines, newest first."""
        out: list[bytes] = []
        if limit <= 0 or not self.directory.is_dir():
            return out
        try:
            with self._locked(exclusive=False):
                for path in self.files():
                    try:
                        lines = path.read_bytes().splitlines()
                    except FileNotFoundError:
                        continue
                    for raw in reversed(lines):
                        if raw.strip():
                            out.append(raw)
                            if len(out) >= limit:
                                return out
        except OSError as exc:
            log.warning("slow-call traces not readable in %s: %s", self.directory, exc)
        return out


# -- span -> record ----------------------------------------------------------------------------
_A = "md."
_P = "md.param."
_C = "md.ctx."
_AIRFLOW_CONTEXT = {
    "dag_id": "AIRFLOW_CTX_DAG_ID",
    "task_id": "AIRFLOW_CTX_TASK_ID",
    "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
    "try_number": "AIRFLOW_CTX_TRY_NUMBER",
}


def _iso(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _record_from_span(span: ReadableSpan) -> SlowCall:
    attrs = dict(span.attributes or {})
    start = span.start_time or 0
    end = span.end_time or start
    ctx = span.get_span_context()
    return SlowCall(
        at=_iso(end),
        started_at=_iso(start),
        provider=str(attrs.get(_A + "provider", "")),
        capability=str(attrs.get(_A + "capability", "")),
        duration_ms=round((end - start) / 1e6, 3),
        threshold_ms=float(attrs.get(_A + "threshold_ms", 0.0)),  # type: ignore[arg-type]
        outcome=str(attrs.get(_A + "outcome", "ok")),
        error=str(attrs[_A + "error"]) if _A + "error" in attrs else None,
        params={k[len(_P) :]: _plain(v) for k, v in attrs.items() if k.startswith(_P)},
        context={k[len(_C) :]: str(v) for k, v in attrs.items() if k.startswith(_C)},
        trace_id=f"{ctx.trace_id:032x}" if ctx is not None else "",
        span_id=f"{ctx.span_id:016x}" if ctx is not None else "",
    )


def _plain(value: object) -> Any:
    if isinstance(value, tuple | list):
        return list(value)
    return value


def _encode_bounded(record: SlowCall) -> bytes:
    line = msgspec.json.encode(record)
    if len(line) > MAX_RECORD_BYTES:
        record.params = {"truncated": True}
        line = msgspec.json.encode(record)
    if len(line) > MAX_RECORD_BYTES:
        record.error = (record.error or "")[:100]
        line = msgspec.json.encode(record)
    return line


class JsonlSpanExporter:
    """An OpenTelemetry SpanExporter writing each span as one bounded JSON line to the store."""

    def __init__(self, store: RotatingJsonlStore) -> None:
        self.store = store
        self.last_ok = False

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        ok = True
        for span in spans:
            try:
                ok = self.store.append(_encode_bounded(_record_from_span(span))) and ok
            except Exception:  # an exporter must not raise into the SDK
                log.debug("slow-call span not exported", exc_info=True)
                ok = False
        self.last_ok = ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- parameters ---------------------------------------------------------------------------------
def _scalar(value: object) -> str | bool | int | float:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return str(value.value)[:MAX_TEXT]
    return str(value)[:MAX_TEXT]


def _param_attributes(params: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (key, value) in enumerate(params.items()):
        if i >= MAX_PARAMS:
            out[_P + "truncated"] = True
            break
        name = str(key)[:64]
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
            out[_P + name] = [str(_scalar(v)) for v in items[:MAX_ITEMS]]
            out[_P + name + "_count"] = len(items)
        else:
            out[_P + name] = _scalar(value)
    return out


def bar_request_params(request: BarRequest) -> dict[str, object]:
    """The parameters of a bars call worth tracing."""
    return {
        "symbols": request.symbols,
        "exchange_mic": request.exchange_mic,
        "interval": request.interval,
        "start": request.start,
        "end": request.end,
    }


def quote_request_params(symbols: Sequence[str], exchange_mic: str) -> dict[str, object]:
    """The parameters of a quotes call worth tracing."""
    return {"symbols": tuple(symbols), "exchange_mic": exchange_mic}


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(outcome, text) of an exception that ended a call."""
    import asyncio

    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", "CancelledError"
    code = getattr(exc, "code", None)
    head = f"{type(exc).__name__}({code})" if code else type(exc).__name__
    return "error", f"{head}: {exc}"[:MAX_ERROR]


# -- the recorder -------------------------------------------------------------------------------
class SlowCallRecorder:
    """Turns slow calls into spans exported to a RotatingJsonlStore; never raises."""

    def __init__(
        self,
        directory: Path | None,
        *,
        max_file_bytes: int = DEFAULT_FILE_KB * 1024,
        max_files: int = DEFAULT_FILES,
    ) -> None:
        self.store = (
            RotatingJsonlStore(directory, max_file_bytes=max_file_bytes, max_files=max_files)
            if directory is not None
            else None
        )
        self._lock = threading.Lock()
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        self._exporter: JsonlSpanExporter | None = None
        self._static_context = {"host": socket.gethostname()[:MAX_TEXT], "pid": str(os.getpid())}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlowCallRecorder:
        """MARKET_DATA_TRACE_DIR (`off` disables), MARKET_DATA_TRACE_FILE_KB, MARKET_DATA_TRACE_FILES."""
        e = os.environ if env is None else env
        raw_dir = e.get(TRACE_DIR_ENV, "").strip()
        if raw_dir.lower() in ("off", "none", "0", "false", "disabled"):
            return cls(None)
        try:
            kb = int(e.get(TRACE_FILE_KB_ENV, "") or DEFAULT_FILE_KB)
            files = int(e.get(TRACE_FILES_ENV, "") or DEFAULT_FILES)
        except ValueError:
            log.warning("%s / %s must be integers; using the defaults", TRACE_FILE_KB_ENV, TRACE_FILES_ENV)
            kb, files = DEFAULT_FILE_KB, DEFAULT_FILES
        directory = Path(raw_dir) if raw_dir else DEFAULT_TRACE_DIR
        return cls(directory, max_file_bytes=max(1, kb) * 1024, max_files=max(1, files))

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _get_tracer(self) -> tuple[Tracer, JsonlSpanExporter]:
        if self._tracer is None or self._exporter is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import SpanLimits, TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON

            assert self.store is not None
            exporter = JsonlSpanExporter(self.store)
            # A private provider: Airflow's own OTel setup (or OTEL_TRACES_SAMPLER) is not touched
            # and does not sample these away; they are recorded because they were slow.
            provider = TracerProvider(
                sampler=ALWAYS_ON,
                resource=Resource.create({"service.name": "market-data", "service.namespace": "providers"}),
                span_limits=SpanLimits(max_span_attributes=64, max_span_attribute_length=MAX_ERROR),
                shutdown_on_exit=False,
            )
            provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
            self._provider, self._exporter = provider, exporter
            self._tracer = provider.get_tracer("market_data.tracing")
        return self._tracer, self._exporter

    def _context_attributes(self) -> dict[str, str]:
        out = {_C + k: v for k, v in self._static_context.items()}
        for key, env in _AIRFLOW_CONTEXT.items():
            value = os.environ.get(env)
            if value:
                out[_C + key] = value[:MAX_TEXT]
        return out

    def record(
        self,
        *,
        provider: str,
        capability: str,
        duration_s: float,
        threshold_s: float,
        params: ParamsArg = None,
        error: BaseException | str | None = None,
        end_time_ns: int | None = None,
    ) -> bool:
        """Store a span for the call if it took longer than `threshold_s`; True when stored."""
        if self.store is None or not duration_s > threshold_s:
            return False
        try:
            end = end_time_ns if end_time_ns is not None else time.time_ns()
            start = end - int(duration_s * 1e9)
            attributes: dict[str, Any] = {
                _A + "provider": str(provider)[:MAX_TEXT],
                _A + "capability": str(capability)[:MAX_TEXT],
                _A + "threshold_ms": float(threshold_s) * 1000.0,
                _A + "outcome": "ok",
            }
            if isinstance(error, BaseException):
                attributes[_A + "outcome"], attributes[_A + "error"] = describe_error(error)
            elif error:
                attributes[_A + "outcome"], attributes[_A + "error"] = "error", str(error)[:MAX_ERROR]
            if params is not None:
                attributes.update(_param_attributes(params() if callable(params) else params))
            attributes.update(self._context_attributes())
            with self._lock:
                tracer, exporter = self._get_tracer()
                span = tracer.start_span(f"provider {capability}", attributes=attributes, start_time=start)
                if _A + "error" in attributes:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, attributes[_A + "error"]))
                span.end(end_time=end)
                return exporter.last_ok
        except Exception:
            log.debug("slow-call trace not recorded", exc_info=True)
            return False

    @contextlib.contextmanager
    def trace(
        self, provider: str, capability: str, *, threshold_s: float, params: ParamsArg = None
    ) -> Iterator[None]:
        """Time the block (sync or `await` inside); record it if slower than `threshold_s`.

        An exception of the block is recorded with the call and re-raised unchanged.
        """
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failure = exc
            raise
        finally:
            duration = time.perf_counter() - started
            if self.store is not None and duration > threshold_s:
                self.record(
                    provider=provider,
                    capability=capability,
                    duration_s=duration,
                    threshold_s=threshold_s,
                    params=params,
                    error=failure,
                )

    def read(
        self, *, limit: int = 100, provider: str | None = None, capability: str | None = None
    ) -> list[SlowCall]:
        """Stored records, newest first, optionally of one provider and/or capability."""
        if self.store is None:
            return []
        decoder = msgspec.json.Decoder(SlowCall)
        out: list[SlowCall] = []
        # read everything kept (bounded by the store) so filters still find `limit` matches
        for raw in self.store.read_lines(self.store.max_total_bytes):
            try:
                rec = decoder.decode(raw)
            except msgspec.DecodeError:
                continue  # a line cut short by a crash: skip it
            if (provider is None or rec.provider == provider) and (
                capability is None or rec.capability == capability
            ):
                out.append(rec)
                if len(out) >= limit:
                    break
        return out

    def shutdown(self) -> None:
        with self._lock:
            if self._provider is not None:
                self._provider.shutdown()
            self._provider = self._tracer = self._exporter = None


_default: SlowCallRecorder | None = None
_default_lock = threading.Lock()


def slow_call_recorder() -> SlowCallRecorder:
    """The process's recorder, built on first use from the environment."""
    global _default
    current = _default
    if current is None:
        with _default_lock:
            if _default is None:
                _default = SlowCallRecorder.from_env()
            current = _default
    return current


def set_slow_call_recorder(recorder: SlowCallRecorder | None) -> None:
    """Replace the process's recorder (None: rebuild from the environment on next use)."""
    global _default
    with _default_lock:
        old, _default = _default, recorder
    if old is not None and old is not recorder:
        old.shutdown()


def record_slow_call(
    *,
    provider: str,
    capability: str,
    duration_s: float,
    threshold_s: float,
    params: ParamsArg = None,
    error: BaseException | str | None = None,
) -> bool:
    """Record a call the caller timed itself, if slower than `threshold_s`; never raises."""
    if not duration_s > threshold_s:
        return False
    try:
        return slow_call_recorder().record(
            provider=provider,
            capability=capability,
            duration_s=duration_s,
            threshold_s=threshold_s,
            params=params,
            error=error,
        )
    except Exception:
        log.debug("slow-call trace not recorded", exc_info=True)
        return False


@contextlib.contextmanager
def trace_provider_call(
    provider: str, capability: str, *, threshold_s: float, params: ParamsArg = None
) -> Iterator[None]:
    """Time a provider call with the process's recorder (see SlowCallRecorder.trace)."""
    try:
        recorder = slow_call_recorder()
    except Exception:  # a broken environment must not break provider calls
        log.debug("slow-call recorder unavailable", exc_info=True)
        recorder = SlowCallRecorder(None)
    with recorder.trace(provider, capability, threshold_s=threshold_s, params=params):
        yield


def read_slow_calls(
    *, limit: int = 100, provider: str | None = None, capability: str | None = None
) -> list[SlowCall]:
    """The process recorder's stored records, newest first."""
    return slow_call_recorder().read(limit=limit, provider=provider, capability=capability)


__all__ = [
    "JsonlSpanExporter",
    "RotatingJsonlStore",
    "SlowCall",
    "SlowCallRecorder",
    "bar_request_params",
    "describe_error",
    "quote_request_params",
    "read_slow_calls",
    "record_slow_call",
    "set_slow_call_recorder",
    "slow_call_recorder",
    "trace_provider_call",
]
