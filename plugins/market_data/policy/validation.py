"""Cross-field validation of a policy: every problem at once, each with its path.

The schema (schema.py, decoded by loader.py) already refused unknown keys, wrong types and
out-of-range values. The rules here span fields: weights that must add up, cadences that
must fit intervals, providers that must exist and serve what a tier asks of them, pools that
must exist, thresholds that must be ordered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import msgspec

from market_data.policy.loader import PolicyError, Problem, parse_policy
from market_data.policy.schema import Policy, enc_hook
from market_data.providers import UnknownAdapterError, spec_for
from market_data.providers.base import Capabilities
from market_data.records import Interval, Tier

MAX_BATCH = 10_000
MAX_CALLS_PER_MINUTE = 1_000_000


def tier_capabilities(policy: Policy, tier: Tier) -> list[str]:
    """Capabilities a tier's sweep needs: `bars:<interval>` per interval, and `quotes`."""
    tp = policy.tiers[tier]
    caps = [f"bars:{iv.value}" for iv in tp.intervals]
    if tp.quotes:
        caps.append("quotes")
    return caps


def _valid_capability(cap: str) -> bool:
    if cap == "quotes":
        return True
    return cap.startswith("bars:") and cap[5:] in Interval._value2member_map_


def _provider_capabilities(policy: Policy, problems: list[Problem]) -> dict[str, Capabilities]:
    """What each configured provider can serve, after its `capabilities` restriction."""
    out: dict[str, Capabilities] = {}
    for name, cfg in policy.providers.items():
        path = f"providers.{name}"
        try:
            caps = spec_for(cfg.adapter(name)).capabilities_for(cfg)
        except UnknownAdapterError as exc:
            problems.append(Problem(f"{path}.kind", str(exc).split(": ", 1)[-1]))
            continue
        for i, cap in enumerate(cfg.capabilities):
            if not _valid_capability(cap):
                problems.append(
                    Problem(f"{path}.capabilities[{i}]", f"{cap!r} is not quotes or bars:<interval>")
                )
            elif not caps.supports(cap):
                problems.append(
                    Problem(
                        f"{path}.capabilities[{i}]", f"the {cfg.adapter(name)} adapter cannot serve {cap}"
                    )
                )
        out[name] = caps
    return out


def _serves(policy: Policy, caps: dict[str, Capabilities], name: str, capability: str) -> bool:
    cfg = policy.providers[name]
    if name not in caps or (cfg.capabilities and capability not in cfg.capabilities):
        return False
    return caps[name].supports(capability)


def _check_tiers(policy: Policy, caps: dict[str, Capabilities], problems: list[Problem]) -> None:
    if not policy.tiers:
        problems.append(Problem("tiers", "at least one tier is required"))
    for tier, tp in policy.tiers.items():
        path = f"tiers.{tier.value}"
        if not tp.intervals:
            problems.append(Problem(f"{path}.intervals", "at least one interval is required"))
            continue
        if len(set(tp.intervals)) != len(tp.intervals):
            problems.append(Problem(f"{path}.intervals", "an interval is listed twice"))
        shortest = min(iv.seconds for iv in tp.intervals)
        if tp.bar_cadence.seconds < shortest:
            problems.append(
                Problem(
                    f"{path}.bar_cadence",
                    f"{tp.bar_cadence.text} is shorter than the shortest interval "
                    f"({min(tp.intervals, key=lambda iv: iv.seconds).value}): sweeps would find nothing new",
                )
            )
        if tp.quote_cadence is not None:
            ratio = tp.quote_cadence.seconds / tp.bar_cadence.seconds if tp.bar_cadence.seconds else 0
            if not tp.quotes:
                problems.append(Problem(f"{path}.quote_cadence", "set while quotes = false"))
            elif ratio < 1 or not math.isclose(ratio, round(ratio)):
                problems.append(
                    Problem(
                        f"{path}.quote_cadence",
                        "must be a whole multiple of bar_cadence "
                        f"({tp.bar_cadence.text}): quotes are fetched by the sweep runs",
                    )
                )
        if tp.lookback.seconds < 2 * tp.bar_cadence.seconds:
            problems.append(
                Problem(
                    f"{path}.lookback",
                    f"must be at least twice bar_cadence ({tp.bar_cadence.text}), "
                    "or every late run leaves a hole",
                )
            )
        if tp.revision_window.seconds > tp.lookback.seconds:
            problems.append(
                Problem(
                    f"{path}.revision_window",
                    f"must not exceed lookback ({tp.lookback.text}): a live sweep reads no further back",
                )
            )
        if tp.batch_size > MAX_BATCH:
            problems.append(Problem(f"{path}.batch_size", f"at most {MAX_BATCH}"))
        for i, name in enumerate(tp.providers):
            if name not in policy.providers:
                problems.append(Problem(f"{path}.providers[{i}]", f"unknown provider {name!r}"))
                continue
            for cap in tier_capabilities(policy, tier):
                if name in caps and not _serves(policy, caps, name, cap):
                    problems.append(Problem(f"{path}.providers[{i}]", f"{name} does not serve {cap}"))
        candidates = [n for n in (tp.providers or policy.providers) if n in policy.providers]
        for cap in tier_capabilities(policy, tier):
            if not any(policy.providers[n].enabled and _serves(policy, caps, n, cap) for n in candidates):
                problems.append(Problem(path, f"no enabled provider serves {cap}"))


def _check_providers(policy: Policy, known_pools: set[str] | None, problems: list[Problem]) -> None:
    if not any(cfg.enabled for cfg in policy.providers.values()):
        problems.append(Problem("providers", "at least one provider must be enabled"))
    for name, cfg in policy.providers.items():
        path = f"providers.{name}"
        if cfg.faults is not None and cfg.adapter(name) != "synthetic":
            problems.append(Problem(f"{path}.faults", "fault knobs exist only for synthetic providers"))
        for i, window in enumerate(cfg.faults.outages if cfg.faults else []):
            if window.end <= window.start:
                problems.append(Problem(f"{path}.faults.outages[{i}].end", "must be after start"))
            if window.start.tzinfo is None or window.end.tzinfo is None:
                problems.append(Problem(f"{path}.faults.outages[{i}]", "times need a UTC offset (e.g. Z)"))
        if cfg.calls_per_minute is not None and cfg.calls_per_minute > MAX_CALLS_PER_MINUTE:
            problems.append(Problem(f"{path}.calls_per_minute", f"at most {MAX_CALLS_PER_MINUTE}"))
        try:
            allowed = spec_for(cfg.adapter(name)).options
        except UnknownAdapterError:
            allowed = {}  # the kind itself is refused by _provider_capabilities
        for key, value in cfg.options.items():
            if key not in allowed:
                problems.append(
                    Problem(f"{path}.options.{key}", f"not an option of the {cfg.adapter(name)} adapter")
                )
            elif value not in allowed[key]:
                problems.append(
                    Problem(f"{path}.options.{key}", f"expected one of {', '.join(sorted(allowed[key]))}")
                )
        if cfg.base_url is not None and not cfg.base_url.startswith(("http://", "https://")):
            problems.append(Problem(f"{path}.base_url", "must start with http:// or https://"))
        if known_pools is not None and cfg.pool_name(name) not in known_pools:
            problems.append(
                Problem(
                    f"{path}.pool",
                    f"Airflow pool {cfg.pool_name(name)!r} is not defined in include/pools.json",
                )
            )


def _ordered(problems: list[Problem], pairs: Iterable[tuple[str, float, str, float]]) -> None:
    """Each (low_path, low, high_path, high) must have low < high."""
    for low_path, low, high_path, high in pairs:
        if not low < high:
            problems.append(Problem(high_path, f"must be greater than {low_path}"))


def _check_thresholds(policy: Policy, problems: list[Problem]) -> None:
    w = policy.health_weights
    total = w.breaker + w.latency + w.errors + w.completeness
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        problems.append(Problem("health_weights", f"weights must add up to 1 (they add up to {total:g})"))
    b = policy.breaker
    if b.cooldown.seconds <= 0:
        problems.append(Problem("breaker.cooldown", "must be positive"))
    if b.max_cooldown.seconds < b.cooldown.seconds:
        problems.append(Problem("breaker.max_cooldown", "must be at least breaker.cooldown"))
    bf = policy.backfill
    for tier in policy.tiers:
        if tier not in bf.caps:
            problems.append(Problem(f"backfill.caps.{tier.value}", "required for every tier"))
    expected = {"manual", "T0", "T1", "T2"}
    if set(bf.priorities) != expected:
        problems.append(Problem("backfill.priorities", "must name exactly manual, T0, T1 and T2"))
    else:
        p = bf.priorities
        _ordered(
            problems,
            [
                ("backfill.priorities.manual", p["manual"], "backfill.priorities.T0", p["T0"]),
                ("backfill.priorities.T0", p["T0"], "backfill.priorities.T1", p["T1"]),
                ("backfill.priorities.T1", p["T1"], "backfill.priorities.T2", p["T2"]),
            ],
        )
    if bf.max_range.seconds > bf.max_age.seconds:
        problems.append(Problem("backfill.max_range", "must not exceed backfill.max_age"))
    for iv in Interval:
        if iv not in bf.max_age_per_interval and iv not in bf.max_range_per_interval:
            continue  # the general pair, checked above
        longest, oldest = bf.max_range_for(iv), bf.max_age_for(iv)
        if longest.seconds > oldest.seconds:
            # named on each side the policy sets for the interval: either may be the one to change
            problems += [
                Problem(
                    f"backfill.{table}.{iv.value}",
                    f"the longest {iv.value} range ({longest.text}) must not exceed how far back a "
                    f"{iv.value} backfill may start ({oldest.text})",
                )
                for table in ("max_range_per_interval", "max_age_per_interval")
                if iv in getattr(bf, table)
            ]
    if bf.batch_size > bf.claim_limit:
        problems.append(Problem("backfill.batch_size", "must not exceed backfill.claim_limit"))
    for key, d in (("cadence", bf.cadence), ("lease", bf.lease), ("max_range", bf.max_range)):
        if d.seconds < 60:
            problems.append(Problem(f"backfill.{key}", "must be at least 1m"))
    s = policy.slo
    _ordered(problems, [("slo.lag_warn", s.lag_warn.seconds, "slo.lag_critical", s.lag_critical.seconds)])
    if s.window.seconds < 300:
        problems.append(Problem("slo.window", "must be at least 5m"))
    if not 1 <= policy.retention.partitions_ahead <= 24:
        problems.append(Problem("retention.partitions_ahead", "between 1 and 24 months"))
    if policy.jobs.mode == "rlc" and not policy.jobs.rlc_list.strip():
        problems.append(Problem("jobs.rlc_list", "required when jobs.mode = rlc"))


def _check_finite(value: object, path: str, problems: list[Problem]) -> None:
    """TOML has `inf`; no knob of ours means anything infinite (an infinite latency would
    make a synthetic provider sleep forever, an infinite multiplier disable an SLO)."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(Problem(path, "must be a finite number"))
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{path}.{k}" if path else str(k), problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]", problems)


def validate_policy(policy: Policy, known_pools: set[str] | None = None) -> list[Problem]:
    """Rules that span fields; [] when the policy is usable.

    Args:
        known_pools: Airflow pool names that exist (include/pools.json); None skips that rule.
    """
    problems: list[Problem] = []
    _check_finite(msgspec.to_builtins(policy, enc_hook=enc_hook), "", problems)
    caps = _provider_capabilities(policy, problems)
    _check_providers(policy, known_pools, problems)
    _check_tiers(policy, caps, problems)
    _check_thresholds(policy, problems)
    return problems


def load_known_pools(include_dir: Path) -> set[str]:
    """Pool names defined in include/pools.json (what ./dev up creates)."""
    path = include_dir / "pools.json"
    return set(json.loads(path.read_text())) if path.exists() else set()


def validate_policy_text(text: str, known_pools: set[str] | None = None) -> list[Problem]:
    """Parse and validate TOML text; [] means the policy can be activated."""
    try:
        policy = parse_policy(text)
    except PolicyError as exc:
        return exc.problems
    return validate_policy(policy, known_pools)


def checked_policy(text: str, known_pools: set[str] | None = None) -> Policy:
    """Parse and validate; raises PolicyError with every problem."""
    policy = parse_policy(text)
    problems = validate_policy(policy, known_pools)
    if problems:
        raise PolicyError(problems)
    return policy
