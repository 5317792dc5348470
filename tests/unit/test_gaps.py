"""The gap math of `market_data.gaps` against plain-Python references (no services).

Stored starts come in any order and repeat (one per stored version); confirmed-empty ranges
overlap and come in any order.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data.gaps import _bar_starts_ns, count_coverage, in_ranges, longest_run, missing_runs


def in_any(value: int, ranges: list[tuple[int, int]]) -> bool:
    return any(s <= value < e for s, e in ranges)


def reference(
    expected: list[int], present: list[int], empty: list[tuple[int, int]] | None = None
) -> list[tuple[int, int, int]]:
    """Runs of expected values neither present nor in an empty range, adjacent among the judged ones."""
    have = set(present)
    judged = [v for v in expected if not in_any(v, empty or [])]
    runs: list[tuple[int, int, int]] = []
    current: list[int] = []
    for value in [*judged, None]:
        if value is not None and value not in have:
            current.append(value)
            continue
        if current:
            runs.append((current[0], current[-1], len(current)))
            current = []
    return runs


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


expected_starts = st.lists(st.integers(0, 200), max_size=60, unique=True).map(sorted)
stored_starts = st.lists(st.integers(-5, 205), max_size=80)
empty_ranges = st.lists(
    st.tuples(st.integers(-5, 205), st.integers(0, 30)).map(lambda t: (t[0], t[0] + t[1])), max_size=4
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(expected=expected_starts, present=stored_starts)
def test_missing_runs_match_the_reference(expected: list[int], present: list[int]) -> None:
    got = missing_runs(arr(expected), arr(present))
    assert got == reference(expected, present)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(expected=expected_starts, present=stored_starts, empty=empty_ranges)
def test_confirmed_empty_bars_are_never_missing_and_runs_continue_across_them(
    expected: list[int], present: list[int], empty: list[tuple[int, int]]
) -> None:
    runs = missing_runs(arr(expected), arr(present), empty)
    assert runs == reference(expected, present, empty)
    # every expected bar is exactly one of stored, confirmed empty (and not stored) or missing
    counts = count_coverage(arr(expected), arr(present), empty)
    stored = sum(1 for v in expected if v in set(present))
    empty_only = sum(1 for v in expected if v not in set(present) and in_any(v, empty))
    assert (counts.expected, counts.stored, counts.confirmed_empty) == (len(expected), stored, empty_only)
    assert counts.missing == sum(bars for _, _, bars in runs) == len(expected) - stored - empty_only


def test_missing_runs_are_contiguous_in_the_expected_sequence() -> None:
    expected = arr([1, 2, 3, 4, 5, 10, 11, 12])  # 5 -> 10 is a night
    present = arr([1, 4, 12])
    assert missing_runs(expected, present) == [(2, 3, 2), (5, 11, 3)]
    assert missing_runs(expected, expected) == []
    # 4 and 5 confirmed empty: 2, 3 and 10, 11 are one run across them, as across the night
    assert missing_runs(expected, arr([1, 12]), [(4, 6)]) == [(2, 11, 4)]


def test_the_longest_run_is_the_earliest_of_the_longest() -> None:
    assert longest_run([]) is None
    assert longest_run([(2, 3, 2), (5, 11, 3), (20, 22, 3)]) == (5, 11, 3)


def test_values_in_overlapping_unsorted_ranges() -> None:
    values = arr([0, 5, 10, 15, 20, 25])
    # overlapping and unsorted ranges: [3, 12) and [8, 16) cover 5, 10, 15; [25, 26) covers 25
    assert in_ranges(values, [(8, 16), (25, 26), (3, 12)]).tolist() == [False, True, True, True, False, True]
    assert not in_ranges(values, []).any()


def test_a_stored_bar_inside_a_confirmed_empty_range_counts_as_stored() -> None:
    # a provider delivered 3 after confirming [2, 4) empty: 3 is stored, 2 confirmed empty
    counts = count_coverage(arr([1, 2, 3, 4, 5]), arr([1, 3, 3]), [(2, 4)])
    assert (counts.expected, counts.stored, counts.confirmed_empty, counts.missing) == (5, 2, 1, 2)


def test_packed_timestamps_decode_to_unix_nanoseconds() -> None:
    # timestamptz_send(): big-endian microseconds since 2000-01-01 UTC
    packed = (0).to_bytes(8, "big", signed=True) + (-1).to_bytes(8, "big", signed=True)
    assert _bar_starts_ns(packed).tolist() == [946_684_800_000_000_000, 946_684_799_999_999_000]
