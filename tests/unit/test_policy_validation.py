"""Policy validation: every invalid document is refused with the path of each problem."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from market_data.policy import PolicyError, parse_policy
from market_data.policy.validation import checked_policy, load_known_pools, validate_policy_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "include" / "policy.toml").read_text()
POOLS = load_known_pools(ROOT / "include")


def edit(pattern: str, replacement: str, text: str = DEFAULT) -> str:
    """The default policy with one regex substitution (which must apply)."""
    new, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert n == 1, pattern
    return new


def add(extra: str) -> str:
    """Append tables at the end of the document."""
    return DEFAULT + "\n" + extra + "\n"


def top(extra: str) -> str:
    """Put keys at the top level (before the first table)."""
    return extra + "\n" + DEFAULT


def test_the_default_policy_is_valid() -> None:
    assert validate_policy_text(DEFAULT, POOLS) == []


INVALID = [
    # (id, document, expected path of one problem)
    ("unknown top-level key", top("colour = 'blue'"), "colour"),
    ("version is assigned by the server", "version = 2\n" + DEFAULT, "version"),
    (
        "unknown key in a tier",
        edit(r"^batch_size = 250$", "batch_size = 250\nbatchsize = 5"),
        "tiers.T0.batchsize",
    ),
    ("unknown tier", add("[tiers.T9]\nintervals = ['1m']\nbar_cadence = '1m'"), "tiers.T9"),
    (
        "interval not in the enum",
        edit(r'^intervals = \["1m"\]$', 'intervals = ["2m"]'),
        "tiers.T0.intervals[0]",
    ),
    (
        "malformed duration",
        edit(r'^bar_cadence = "1m"$', 'bar_cadence = "every minute"'),
        "tiers.T0.bar_cadence",
    ),
    (
        "cadence shorter than the interval",
        edit(r'^bar_cadence = "5m"$', 'bar_cadence = "1m"'),
        "tiers.T1.bar_cadence",
    ),
    (
        "quote cadence not a multiple",
        edit(r'^quote_cadence = "1m"$', 'quote_cadence = "90s"'),
        "tiers.T0.quote_cadence",
    ),
    (
        "lookback shorter than two cadences",
        edit(r'^lookback = "15m"$', 'lookback = "1m"'),
        "tiers.T0.lookback",
    ),
    ("batch size not positive", edit(r"^batch_size = 250$", "batch_size = 0"), "tiers.T0.batch_size"),
    (
        "tier names an unknown provider",
        edit(r"^batch_size = 250$", 'batch_size = 250\nproviders = ["nope"]'),
        "tiers.T0.providers[0]",
    ),
    (
        "provider lacks the tier's capability",
        edit(
            r"^max_concurrency = 8$",
            'max_concurrency = 8\ncapabilities = ["bars:1m"]',
            text=edit(r'^intervals = \["5m"\]$', 'intervals = ["5m"]\nproviders = ["synthetic"]'),
        ),
        "tiers.T1.providers[0]",
    ),
    ("no enabled provider", DEFAULT.replace("enabled = true", "enabled = false"), "providers"),
    ("unknown adapter kind", edit(r'^kind = "synthetic"$', 'kind = "bloomberg"'), "providers.synthetic.kind"),
    (
        "bad capability string",
        edit(r"^max_concurrency = 8$", 'max_concurrency = 8\ncapabilities = ["candles"]'),
        "providers.synthetic.capabilities[0]",
    ),
    (
        "pool not defined",
        edit(r'^pool = "provider_synthetic"$', 'pool = "provider_missing"'),
        "providers.synthetic.pool",
    ),
    (
        "rate limit not positive",
        edit(r"^calls_per_minute = 6000$", "calls_per_minute = 0"),
        "providers.synthetic.calls_per_minute",
    ),
    (
        "probability above 1",
        edit(r"^error_rate = 0.0$", "error_rate = 1.5"),
        "providers.synthetic.faults.error_rate",
    ),
    (
        "outage ends before it starts",
        edit(r"^outages = \[\]$", "outages = [{start = 2026-11-23T15:00:00Z, end = 2026-11-23T14:00:00Z}]"),
        "providers.synthetic.faults.outages[0].end",
    ),
    (
        "faults on a non-synthetic provider",
        add(
            '[providers.yahoo_eu]\nkind = "yahoo"\nenabled = false\npool = "provider_yahoo"\n'
            "[providers.yahoo_eu.faults]\nerror_rate = 0.1"
        ),
        "providers.yahoo_eu.faults",
    ),
    ("bad provider name", add('[providers.Yahoo-2]\nkind = "yahoo"'), "providers.Yahoo-2"),
    ("health weights do not add up to 1", edit(r"^breaker = 0.45$", "breaker = 0.5"), "health_weights"),
    ("negative weight", edit(r"^errors = 0.20$", "errors = -0.2"), "health_weights.errors"),
    (
        "cooldown longer than its maximum",
        edit(r'^max_cooldown = "10m"$', 'max_cooldown = "10s"'),
        "breaker.max_cooldown",
    ),
    (
        "threshold of the wrong type",
        edit(r"^failure_threshold = 5$", 'failure_threshold = "five"'),
        "breaker.failure_threshold",
    ),
    ("cap not positive", edit(r"^T0 = 20000$", "T0 = 0"), "backfill.caps.T0"),
    ("cap for an unknown tier", edit(r"^T2 = 40000$", "T2 = 40000\nT3 = 5"), "backfill.caps.T3"),
    ("priorities out of order", edit(r"^T1 = 20$", "T1 = 5"), "backfill.priorities.T1"),
    ("max range beyond max age", edit(r'^max_range = "30d"$', 'max_range = "1000d"'), "backfill.max_range"),
    (
        "a daily max age shorter than max range",
        edit(r'^1d = "18250d"$', '1d = "10d"'),
        "backfill.max_age_per_interval.1d",
    ),
    (
        "a daily max range beyond the daily max age",
        edit(r'^1d = "3660d"$', '1d = "20000d"'),
        "backfill.max_range_per_interval.1d",
    ),
    (
        "a max age of an unknown interval",
        edit(r'^1d = "18250d"$', '2d = "100d"'),
        "backfill.max_age_per_interval.2d",
    ),
    (
        "batch larger than the claim limit",
        edit(r"^claim_limit = 500$", "claim_limit = 10"),
        "backfill.batch_size",
    ),
    (
        "lag thresholds not ordered",
        edit(r'^lag_critical = "15m"$', 'lag_critical = "1m"'),
        "slo.lag_critical",
    ),
    (
        "gap multiplier below 1",
        edit(r"^gap_threshold_multiplier = 2.0$", "gap_threshold_multiplier = 0.5"),
        "slo.gap_threshold_multiplier",
    ),
    ("unknown job source mode", edit(r'^mode = "local"$', 'mode = "kafka"'), "jobs.mode"),
    (
        "revision window beyond the lookback",
        edit(r'^revision_window = "2m"$', 'revision_window = "20m"'),
        "tiers.T0.revision_window",
    ),
    (
        "revision window not a duration",
        edit(r'^revision_window = "2m"$', "revision_window = 2"),
        "tiers.T0.revision_window",
    ),
    (
        "revision size beyond half the price",
        edit(r"^revision_size = 0.002$", "revision_size = 0.9"),
        "providers.synthetic.faults.revision_size",
    ),
    (
        "revision rate above 1",
        edit(r"^revision_rate = 0.08$", "revision_rate = 2"),
        "providers.synthetic.faults.revision_rate",
    ),
    ("not TOML at all", "tiers = [", "$"),
]


@pytest.mark.parametrize("doc,path", [(d, p) for _, d, p in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_policies_are_refused_with_the_path(doc: str, path: str) -> None:
    problems = validate_policy_text(doc, POOLS)
    assert problems, "accepted"
    assert path in [p.path for p in problems], problems
    assert all(p.reason for p in problems)


def test_every_problem_comes_back_at_once() -> None:
    doc = edit(
        r"^breaker = 0.45$",
        "breaker = 0.5",
        text=edit(
            r'^lag_critical = "15m"$',
            'lag_critical = "1m"',
            text=edit(r'^bar_cadence = "1m"$', 'bar_cadence = "soon"', text=top("colour = 1")),
        ),
    )
    paths = {p.path for p in validate_policy_text(doc, POOLS)}
    # type problems are reported together; cross-field rules run once the shape is right
    assert {"colour", "tiers.T0.bar_cadence"} <= paths
    fixed = edit(r'^bar_cadence = "soon"$', 'bar_cadence = "1m"', text=doc).replace("colour = 1\n", "")
    assert {p.path for p in validate_policy_text(fixed, POOLS)} == {"health_weights", "slo.lag_critical"}


def test_checked_policy_raises_with_all_problems() -> None:
    with pytest.raises(PolicyError) as exc:
        checked_policy(edit(r"^breaker = 0.45$", "breaker = 0.5"), POOLS)
    assert [p.path for p in exc.value.problems] == ["health_weights"]


def test_defaults_fill_what_the_document_leaves_out() -> None:
    p = parse_policy('[tiers.T0]\nintervals = ["1m"]\nbar_cadence = "1m"\n[providers.synthetic]\n')
    assert p.breaker.failure_threshold == 5
    assert p.slo.gap_threshold_multiplier == 2.0
    assert p.backfill.caps["T0"] == 20_000


def test_dev_policy_validate_prints_the_same_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(r"^breaker = 0.45$", "breaker = 0.5"))
    out = subprocess.run([str(ROOT / "dev"), "policy", "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "health_weights: weights must add up to 1" in out.stdout
    ok = subprocess.run(
        [str(ROOT / "dev"), "policy", "validate", str(ROOT / "include" / "policy.toml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_vendor_options_are_checked_per_adapter() -> None:
    bad = DEFAULT.replace('options = { feed = "iex" }', 'options = { feed = "nasdaq", colour = "red" }')
    paths = {p.path: p.reason for p in validate_policy_text(bad, POOLS)}
    assert "expected one of delayed_sip, iex, sip" in paths["providers.alpaca.options.feed"]
    assert "not an option" in paths["providers.alpaca.options.colour"]
