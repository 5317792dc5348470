"""The ingestion job: one schema for jobs computed locally and jobs popped from the RLC list.

An RLC (external rate-limit coordinator) pushes JSON objects like

    {"kind": "bars", "symbol": "AAPL", "interval": "1m",
     "start": "2026-11-20T14:30:00Z", "end": "2026-11-20T15:30:00Z", "id": "rlc-123"}
    {"kind": "quotes", "symbol": "AAPL"}

`decode_job` turns one message into a `Job` or raises `JobRejected` with the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from market_data.records import MIC, Interval, Symbol, Tier

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_JOB_BYTES = 4096


class Job(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Fetch bars of one symbol and interval over [start, end), or its latest quote."""

    kind: Literal["bars", "quotes"]
    symbol: Symbol
    interval: Interval | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    exchange_mic: MIC | None = None
    """Filled from the universe when the sender leaves it out."""
    tier: Tier | None = None
    provider: str | None = None
    """Pin a provider (the registry still refuses one whose breaker is open)."""
    id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    """Sender's id, for de-duplication and tracing."""

    @property
    def capability(self) -> str:
        return "quotes" if self.kind == "quotes" else f"bars:{self.interval}"


class JobRejected(ValueError):
    """A job message that cannot be run, with the reason."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        """Short label for `jobs_rejected_total{reason}`."""


_decoder = msgspec.json.Decoder(Job)


def check_job(job: Job) -> Job:
    """Rules that span fields; raises JobRejected."""
    if job.kind == "bars":
        if job.interval is None:
            raise JobRejected("interval: required for bars jobs", "missing_field")
        if job.start is None or job.end is None:
            raise JobRejected("start/end: required for bars jobs", "missing_field")
        if job.end <= job.start:
            raise JobRejected("end: must be after start", "bad_range")
    elif job.interval is not None or job.start is not None or job.end is not None:
        raise JobRejected("quotes jobs take no interval, start or end", "bad_field")
    return job


def decode_job(message: bytes | str) -> Job:
    """Decode and check one RLC message.

    Raises:
        JobRejected: with a reason naming the offending field.
    """
    try:
        raw = message.encode() if isinstance(message, str) else message
    except UnicodeEncodeError as exc:  # a str with lone surrogates is not text any sender could send
        raise JobRejected(f"not valid UTF-8 text: {exc.reason} at {exc.start}", "malformed") from exc
    if len(raw) > MAX_JOB_BYTES:
        raise JobRejected(f"message is {len(raw)} bytes; the limit is {MAX_JOB_BYTES}", "too_large")
    try:
        job = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise JobRejected(str(exc), "invalid") from exc
    except msgspec.DecodeError as exc:
        raise JobRejected(f"not valid JSON: {exc}", "malformed") from exc
    return check_job(job)
