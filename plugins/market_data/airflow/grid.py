"""How mapped batches are named in the Airflow grid (their `map_index_template`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LABEL = "batch_label"
"""The context key a mapped task sets; its `map_index_template` is `{{ batch_label }}`."""
MAP_INDEX_TEMPLATE = "{{ " + LABEL + " }}"


def batch_label(source: str, symbols: Iterable[str]) -> str:
    """`synthetic AAPL..MSFT (250)`: where the batch's data comes from, its first and last symbol
    (in batch order) and how many distinct symbols it holds."""
    distinct = list(dict.fromkeys(symbols))
    if not distinct:
        return f"{source} (0)"
    span = distinct[0] if len(distinct) == 1 else f"{distinct[0]}..{distinct[-1]}"
    return f"{source} {span} ({len(distinct)})"


def providers_text(calls: Mapping[str, int], fallback: str) -> str:
    """The providers that answered, most calls first (`synthetic` or `finnhub+yahoo`)."""
    names = [name for name, _ in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "+".join(names) or fallback


def set_label(ctx: Any, label: str) -> None:
    """Name the running mapped task instance in the grid (rendered when the task ends)."""
    ctx[LABEL] = label
