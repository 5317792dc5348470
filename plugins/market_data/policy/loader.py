"""Reading a policy: from TOML text, from a file, or the active version in Postgres."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import asyncpg
import msgspec

from market_data.policy.schema import Policy, dec_hook


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
    """`db` (the active row of policy_versions) or the file it came from."""

    @property
    def checksum(self) -> str:
        return policy_checksum(self.body)


def policy_checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _msgspec_path(message: str) -> tuple[str, str]:
    """Split msgspec's 'reason - at `$.a.b`' into ('a.b', 'reason')."""
    reason, sep, where = message.rpartition(" - at `")
    if not sep:
        return "$", message
    path = where.rstrip("`").removeprefix("$").lstrip(".") or "$"
    return path, reason


def parse_policy(text: str) -> Policy:
    """Decode TOML text into a Policy (shape and types only).

    Raises:
        PolicyError: TOML syntax, unknown keys, wrong types or ranges.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([Problem("$", f"not valid TOML: {exc}")]) from exc
    try:
        return msgspec.convert(data, Policy, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        path, reason = _msgspec_path(str(exc))
        raise PolicyError([Problem(path, reason)]) from exc


def load_policy_file(path: Path) -> LoadedPolicy:
    body = path.read_text()
    policy = parse_policy(body)
    return LoadedPolicy(version=policy.version, policy=policy, body=body, source=str(path))


async def load_active_policy(conn: asyncpg.Connection, fallback: Path) -> LoadedPolicy:
    """The active policy version, or the policy file when Postgres holds none yet."""
    row = await conn.fetchrow("SELECT version, body FROM policy_versions WHERE active")
    if row is None:
        return load_policy_file(fallback)
    return LoadedPolicy(
        version=row["version"], policy=parse_policy(row["body"]), body=row["body"], source="db"
    )


async def load_policy_version(conn: asyncpg.Connection, version: int, fallback: Path) -> LoadedPolicy:
    """A specific stored version (what a DAG run recorded at its start).

    Falls back to the policy file when Postgres has no versions yet and the file carries
    that version number.
    """
    row = await conn.fetchrow("SELECT version, body FROM policy_versions WHERE version = $1", version)
    if row is not None:
        return LoadedPolicy(
            version=row["version"], policy=parse_policy(row["body"]), body=row["body"], source="db"
        )
    loaded = load_policy_file(fallback)
    if loaded.version != version:
        raise PolicyError(
            [
                Problem(
                    "version",
                    f"policy version {version} is not stored and the file has {loaded.version}",
                )
            ]
        )
    return loaded
