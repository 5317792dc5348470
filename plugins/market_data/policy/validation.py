"""Cross-field validation of a policy: every problem at once, each with its path."""

from __future__ import annotations

from market_data.policy.loader import PolicyError, Problem, parse_policy
from market_data.policy.schema import Policy


def validate_policy(policy: Policy) -> list[Problem]:
    """Rules that span fields (the schema already checked types, ranges and unknown keys)."""
    problems: list[Problem] = []
    for tier, tp in policy.tiers.items():
        for name in tp.providers:
            if name not in policy.providers:
                problems.append(Problem(f"tiers.{tier}.providers", f"unknown provider {name!r}"))
    return problems


def validate_policy_text(text: str) -> list[Problem]:
    """Parse and validate TOML text; [] means the policy is usable."""
    try:
        policy = parse_policy(text)
    except PolicyError as exc:
        return exc.problems
    return validate_policy(policy)
