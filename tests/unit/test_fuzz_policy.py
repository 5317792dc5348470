"""Hypothesis fuzzing of the policy validator (`validate_policy_text`, behind /ops/validate,
/ops/reload and `./dev policy validate`).

Any text, and the default policy with keys removed, replaced by values of any TOML type or
added, is either refused with every problem named by its path, or accepted, and then it is
a policy the DAGs can run on: every duration converts to a timedelta that can be taken from
now, every number is finite. Nothing else may be raised.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data.policy import Problem
from market_data.policy.schema import Duration, Policy
from market_data.policy.validation import checked_policy, load_known_pools, validate_policy_text
from market_data.records import utcnow

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (ROOT / "include" / "policy.toml").read_text()
DEFAULT = tomllib.loads(DEFAULT_TEXT)
POOLS = load_known_pools(ROOT / "include")
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _paths(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in d.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out.extend(_paths(v, (*prefix, k)))
    return out


PATHS = _paths(DEFAULT)


def _get(path: tuple[str, ...]) -> Any:
    cur: Any = DEFAULT
    for k in path:
        cur = cur[k]
    return cur


TABLES = [(), *[p for p in PATHS if isinstance(_get(p), dict)]]

# -- a small TOML writer (the standard library reads TOML but does not write it) -------------


def _key(k: str) -> str:
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v) + '"'
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    """Every table inline (TOML allows it): simple and exact."""
    return "\n".join(f"{_key(k)} = {_value(v)}" for k, v in doc.items()) + "\n"


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "0s",
            "1ms",
            "90s",
            "5m",
            "1h",
            "2d",
            "1.5h",
            "-5m",
            "5 m",
            "5x",
            "",
            "36500d",
            "36501d",
            "99999999999d",
        ]
    )
    | st.sampled_from(["1m", "5m", "1d", "2m", "synthetic", "finnhub", "nope", "T0", "rlc", "local", "iex"])
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def check(text: str) -> list[Problem]:
    """The property: every problem named, or a policy the DAGs can use."""
    problems = validate_policy_text(text, POOLS)
    assert isinstance(problems, list)
    for p in problems:
        assert isinstance(p, Problem) and p.path and p.reason.strip(), p
    if not problems:
        policy = checked_policy(text, POOLS)
        assert isinstance(policy, Policy)
        now = utcnow()
        for value in _walk(policy):
            if isinstance(value, Duration):
                assert now - value.delta < now + value.delta or value.seconds == 0
            elif isinstance(value, float):
                assert math.isfinite(value)
    return problems


def _walk(obj: Any) -> list[Any]:
    out = []
    if hasattr(obj, "__struct_fields__"):
        for name in obj.__struct_fields__:
            out.extend(_walk(getattr(obj, name)))
    elif isinstance(obj, dict):
        for v in obj.values():
            out.extend(_walk(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_walk(v))
    else:
        out.append(obj)
    return out


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    cur = doc
    for k in path[:-1]:
        if not isinstance(cur.get(k), dict):
            return
        cur = cur[k]
    if value is _DELETE:
        cur.pop(path[-1], None)
    else:
        cur[path[-1]] = value


_DELETE = object()


@EXAMPLES
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    check(text)


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from(PATHS), toml_values | st.just(_DELETE)), min_size=1, max_size=4))
def test_the_default_policy_with_values_replaced_or_removed(
    changes: list[tuple[tuple[str, ...], Any]],
) -> None:
    doc = tomllib.loads(DEFAULT_TEXT)
    for path, value in changes:
        _set(doc, path, value)
    check(to_toml(doc))


@EXAMPLES
@given(st.sampled_from(TABLES), st.text(min_size=1, max_size=12), toml_values)
def test_unknown_keys_anywhere_are_refused(table: tuple[str, ...], key: str, value: Any) -> None:
    doc = tomllib.loads(DEFAULT_TEXT)
    target = doc
    for k in table:
        target = target[k]
    if key in target:
        return
    target[key] = value
    problems = check(to_toml(doc))
    if not (table == ("providers",) and isinstance(value, dict)):  # only a new provider may be valid
        assert problems, f"{table}.{key} was accepted"


def test_the_writer_round_trips_the_default_policy() -> None:
    assert tomllib.loads(to_toml(DEFAULT)) == DEFAULT
    assert check(to_toml(DEFAULT)) == []
