"""missing_runs against a plain-Python reference, on arbitrary (unsorted, repeated) stored starts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data.ingest.gaps import _bar_starts_ns, missing_runs


def reference(expected: list[int], present: list[int]) -> list[tuple[int, int, int]]:
    have = set(present)
    runs: list[tuple[int, int, int]] = []
    current: list[int] = []
    for value in [*expected, None]:
        if value is not None and value not in have:
            current.append(value)
            continue
        if current:
            runs.append((current[0], current[-1], len(current)))
            current = []
    return runs


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    expected=st.lists(st.integers(0, 200), max_size=60, unique=True).map(sorted),
    present=st.lists(st.integers(-5, 205), max_size=80),
)
def test_missing_runs_match_the_reference(expected: list[int], present: list[int]) -> None:
    got = missing_runs(np.array(expected, dtype=np.int64), np.array(present, dtype=np.int64))
    assert got == reference(expected, present)


def test_packed_timestamps_decode_to_unix_nanoseconds() -> None:
    # timestamptz_send(): big-endian microseconds since 2000-01-01 UTC
    packed = (0).to_bytes(8, "big", signed=True) + (-1).to_bytes(8, "big", signed=True)
    assert _bar_starts_ns(packed).tolist() == [946_684_800_000_000_000, 946_684_799_999_999_000]
