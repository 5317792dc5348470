"""Reading a policy from TOML text or a file (reader.py reads the versions stored in Postgres).

Decoding goes section by section (each tier, each provider, each top-level table) so a
document with several mistakes gets every one of them back at once, each with its path.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from market_data.policy.schema import Policy, ProviderPolicy, TierPolicy, dec_hook
from market_data.records import Tier

FILE_VERSION = 1
"""The version a policy file counts as before Postgres holds any (what `./dev up` stores)."""
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Problem(msgspec.Struct, frozen=True):
    """One reason a policy is refused: where (`tiers.T0.bar_cadence`) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class PolicyError(ValueError):
    """A policy that cannot be used; `problems` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class LoadedPolicy(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    policy: Policy
    body: str
    source: str
    """`db` (a row of policy_versions) or the file it came from."""

    @property
    def checksum(self) -> str:
        return policy_checksum(self.body)


def policy_checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _join(prefix: str, msgspec_path: str) -> str:
    """'tiers.T0' + '$.lookback' -> 'tiers.T0.lookback'; '$[2]' -> '[2]'."""
    rest = msgspec_path.removeprefix("$")
    if rest.startswith("."):
        rest = rest[1:]
        return f"{prefix}.{rest}" if prefix and rest else (prefix or rest)
    return f"{prefix}{rest}" if prefix else (rest or "$")


def _problem(prefix: str, exc: msgspec.ValidationError) -> Problem:
    """msgspec says 'reason - at `$.a.b`'; turn that into a Problem with a full path."""
    reason, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        return Problem(prefix or "$", str(exc))
    path = where.rstrip("`")
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", reason)
    if unknown:  # name the unknown key in the path itself
        return Problem(_join(prefix, f"{path}.{unknown.group(1)}"), "unknown key")
    return Problem(_join(prefix, path), reason)


def _struct_of(type_: Any) -> type[msgspec.Struct] | None:
    """The Struct class of `T` or `T | None`, else None."""
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return type_
    if get_origin(type_) in (Union, types.UnionType):
        args = [a for a in get_args(type_) if a is not type(None)]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
            return args[0]
    return None


def _check_value(value: Any, type_: Any, path: str, problems: list[Problem]) -> None:
    """Check one value; tables of Structs and dicts are checked entry by entry."""
    nested = _struct_of(type_)
    if nested is not None and value is not None:
        _check_struct(value, nested, path, problems)
        return
    if get_origin(type_) is dict and isinstance(value, dict):
        key_type, value_type = get_args(type_)
        for k, v in value.items():
            try:
                msgspec.convert(k, key_type, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                problems.append(Problem(f"{path}.{k}", f"bad key: {_problem('', exc).reason}"))
                continue
            _check_value(v, value_type, f"{path}.{k}", problems)
        return
    try:
        msgspec.convert(value, type_, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        problems.append(_problem(path, exc))


def _check_struct(value: Any, struct: type[msgspec.Struct], prefix: str, problems: list[Problem]) -> None:
    """Check a table against a Struct field by field, recursing into nested tables."""
    if not isinstance(value, dict):
        problems.append(Problem(prefix, f"expected a table, got {type(value).__name__}"))
        return
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    for key in value:
        if key not in fields:
            problems.append(Problem(f"{prefix}.{key}", "unknown key"))
    for name, f in fields.items():
        path = f"{prefix}.{name}"
        if name not in value:
            if f.required:
                problems.append(Problem(path, "required"))
            continue
        _check_value(value[name], f.type, path, problems)


_TOP_LEVEL = set(Policy.__struct_fields__)


def decode_policy(data: dict[str, Any]) -> Policy:
    """Decode a parsed document into a Policy, collecting every shape and type problem.

    Raises:
        PolicyError: unknown keys, wrong types, values out of range.
    """
    problems: list[Problem] = []
    for key in data:
        if key == "version":
            problems.append(Problem("version", "versions are numbered by the server; remove this key"))
        elif key not in _TOP_LEVEL:
            problems.append(Problem(key, "unknown key"))
    for key in ("tiers", "providers"):
        if key not in data:
            problems.append(Problem(key, "required"))
        elif not isinstance(data[key], dict):
            problems.append(Problem(key, f"expected a table, got {type(data[key]).__name__}"))
    tiers: dict[str, Any] = data["tiers"] if isinstance(data.get("tiers"), dict) else {}
    for name, body in tiers.items():
        if name not in Tier.__members__:
            problems.append(Problem(f"tiers.{name}", f"unknown tier; expected one of {', '.join(Tier)}"))
        else:
            _check_struct(body, TierPolicy, f"tiers.{name}", problems)
    providers: dict[str, Any] = data["providers"] if isinstance(data.get("providers"), dict) else {}
    for name, body in providers.items():
        if not PROVIDER_NAME.match(name):
            problems.append(
                Problem(f"providers.{name}", "provider names are lowercase letters, digits and _")
            )
        _check_struct(body, ProviderPolicy, f"providers.{name}", problems)
    for f in msgspec.structs.fields(Policy):
        if f.name in ("tiers", "providers") or f.name not in data:
            continue
        _check_value(data[f.name], f.type, f.name, problems)
    if problems:
        raise PolicyError(problems)
    return msgspec.convert(data, Policy, dec_hook=dec_hook)


def parse_policy(text: str) -> Policy:
    """Decode TOML text into a Policy (shape and types; see validation.py for the rest).

    Raises:
        PolicyError: TOML syntax, unknown keys, wrong types or ranges.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([Problem("$", f"not valid TOML: {exc}")]) from exc
    return decode_policy(data)


def load_policy_file(path: Path) -> LoadedPolicy:
    body = path.read_text()
    return LoadedPolicy(version=FILE_VERSION, policy=parse_policy(body), body=body, source=str(path))
