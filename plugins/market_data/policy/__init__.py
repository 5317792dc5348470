"""The policy: one validated, versioned, hot-reloadable document shared by DAGs and the API."""

from market_data.policy.loader import LoadedPolicy, PolicyError, Problem, load_policy_file, parse_policy
from market_data.policy.reader import (
    SAFE_DEFAULTS,
    PolicyReader,
    load_active_policy,
    load_policy_version,
    parse_time_policy,
)
from market_data.policy.schema import Duration, Policy, ProviderPolicy, SyntheticFaults, TierPolicy

__all__ = [
    "SAFE_DEFAULTS",
    "Duration",
    "LoadedPolicy",
    "Policy",
    "PolicyError",
    "PolicyReader",
    "Problem",
    "ProviderPolicy",
    "SyntheticFaults",
    "TierPolicy",
    "load_active_policy",
    "load_policy_file",
    "load_policy_version",
    "parse_policy",
    "parse_time_policy",
]
