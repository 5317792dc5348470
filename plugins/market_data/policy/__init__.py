"""The policy: one validated, versioned, hot-reloadable document shared by DAGs and the API."""

from market_data.policy.loader import (
    LoadedPolicy,
    PolicyError,
    Problem,
    load_active_policy,
    load_policy_file,
    load_policy_version,
    parse_policy,
)
from market_data.policy.schema import Duration, Policy, ProviderPolicy, SyntheticFaults, TierPolicy

__all__ = [
    "Duration",
    "LoadedPolicy",
    "Policy",
    "PolicyError",
    "Problem",
    "ProviderPolicy",
    "SyntheticFaults",
    "TierPolicy",
    "load_active_policy",
    "load_policy_file",
    "load_policy_version",
    "parse_policy",
]
