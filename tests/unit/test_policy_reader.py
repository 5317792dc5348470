"""The policy reader's parse-time source: the policy file, else the safe defaults (no network)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from market_data.airflow import backfill_tasks
from market_data.policy import SAFE_DEFAULTS, parse_time_policy
from market_data.records import Interval, Tier

ROOT = Path(__file__).resolve().parents[2]


def test_dag_files_are_built_from_the_policy_file() -> None:
    policy = parse_time_policy(ROOT / "include" / "policy.toml")
    assert policy.tiers[Tier.T1].bar_cadence.seconds == 300
    assert "synthetic" in policy.providers


def test_an_unusable_policy_file_gives_the_safe_defaults(tmp_path: Path) -> None:
    broken = tmp_path / "policy.toml"
    broken.write_text("[tiers.T0]\nbar_cadence = 'often'\n")
    assert parse_time_policy(broken) is SAFE_DEFAULTS
    assert parse_time_policy(tmp_path / "missing.toml") is SAFE_DEFAULTS


def test_the_safe_defaults_sweep_every_tier_each_minute_and_retry_backfills_three_times() -> None:
    assert set(SAFE_DEFAULTS.tiers) == set(Tier)
    for tp in SAFE_DEFAULTS.tiers.values():
        assert tp.intervals == [Interval.M1] and tp.bar_cadence.seconds == 60
    assert SAFE_DEFAULTS.providers == {}
    assert SAFE_DEFAULTS.backfill.cadence.seconds == 300
    assert (SAFE_DEFAULTS.backfill.retries, SAFE_DEFAULTS.backfill.retry_delay.delta) == (
        3,
        timedelta(seconds=30),
    )


def test_md_backfill_gets_its_groups_and_retries_from_the_same_reader(monkeypatch, tmp_path: Path) -> None:
    assert ("synthetic", "provider_synthetic") in backfill_tasks.task_groups()
    monkeypatch.setenv("MARKET_DATA_POLICY_FILE", str(tmp_path / "missing.toml"))
    assert backfill_tasks.task_groups() == []
    assert backfill_tasks.retry_settings() == (3, timedelta(seconds=30))
