"""Hypothesis fuzzing of the RLC job decoder (`market_data.jobs.decode_job`).

Whatever arrives on the RLC list (bytes, text, JSON of any shape, a valid job with one field
broken, messages over the size limit) either decodes to a Job that keeps every rule the
sweep relies on, or is refused with `JobRejected` carrying a reason and a known code. No
other exception escapes: the consumer records the refusal and goes on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data.jobs import MAX_JOB_BYTES, Job, JobRejected, decode_job
from market_data.records import Interval, Tier, is_valid_symbol

CODES = {"too_large", "invalid", "malformed", "missing_field", "bad_range", "bad_field"}
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = {
    "kind": "bars",
    "symbol": "AAPL",
    "interval": "1m",
    "start": "2026-11-23T15:00:00Z",
    "end": "2026-11-23T15:30:00Z",
    "exchange_mic": "XNAS",
    "tier": "T0",
    "provider": "synthetic",
    "id": "rlc-1",
}
FIELDS = [*VALID, "unknown", "", "kind ", "Symbol"]

# Any JSON value, with the strings a job's fields take (and near misses) mixed in.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "bars",
            "quotes",
            "AAPL",
            "aapl",
            "BRK.B",
            "A" * 16,
            "1m",
            "5m",
            "1d",
            "2m",
            "XNAS",
            "ZZZZ",
            "T0",
            "T9",
            "2026-11-23T15:00:00Z",
            "2026-11-23T15:00:00",  # no offset
            "2026-11-23T15:00:00+14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T15:00:00Z",
            "2026-11-23 15:00:00Z",
            "\u0000",
            "\ud7ff",
            "x" * 200,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
job_objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=10)


def check(message: bytes | str) -> Job | None:
    """The property: a Job that keeps the rules, or a refusal with a reason."""
    try:
        job = decode_job(message)
    except JobRejected as exc:
        assert exc.code in CODES, exc.code
        assert isinstance(exc.reason, str) and exc.reason.strip()
        return None
    assert isinstance(job, Job)
    assert is_valid_symbol(job.symbol)
    assert job.tier is None or isinstance(job.tier, Tier)
    if job.kind == "bars":
        assert isinstance(job.interval, Interval)
        assert job.start is not None and job.end is not None
        assert job.start.tzinfo is not None and job.end.tzinfo is not None
        assert job.end > job.start
    else:
        assert job.kind == "quotes" and job.interval is None and job.start is None and job.end is None
    assert msgspec.json.decode(msgspec.json.encode(job), type=Job) == job  # it round-trips (XCom)
    return job


@EXAMPLES
@given(st.binary(max_size=MAX_JOB_BYTES + 200))
def test_any_bytes(message: bytes) -> None:
    check(message)


@EXAMPLES
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=300))
def test_any_text_including_lone_surrogates(message: str) -> None:
    check(message)


@EXAMPLES
@given(job_objects)
def test_json_objects_of_any_shape(obj: dict[str, Any]) -> None:
    check(json.dumps(obj).encode())


@EXAMPLES
@given(st.sampled_from(FIELDS), json_values | st.just("__delete__"))
def test_a_valid_job_with_one_field_broken(field: str, value: Any) -> None:
    obj = dict(VALID)
    if value == "__delete__":
        obj.pop(field, None)
    else:
        obj[field] = value
    check(json.dumps(obj).encode())


@EXAMPLES
@given(st.integers(min_value=0, max_value=2 * MAX_JOB_BYTES), st.sampled_from([" ", "\n", "\t"]))
def test_padding_up_to_and_past_the_size_limit(pad: int, ws: str) -> None:
    raw = json.dumps(VALID).encode()
    message = raw[:-1] + (ws * pad).encode() + b"}"
    job = check(message)
    assert (job is not None) == (len(message) <= MAX_JOB_BYTES)


@EXAMPLES
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones() | st.just(UTC)
    ),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)
def test_any_pair_of_times(start: datetime, end: datetime) -> None:
    obj = {**VALID, "start": start.isoformat(), "end": end.isoformat()}
    job = check(json.dumps(obj).encode())
    if job is not None:
        assert job.end > job.start


def test_the_strategies_reach_both_outcomes() -> None:
    assert check(json.dumps(VALID).encode()) is not None
    assert check(json.dumps({"kind": "quotes", "symbol": "AAPL"})) is not None
    assert check(b"{") is None and check(json.dumps({**VALID, "end": VALID["start"]})) is None
