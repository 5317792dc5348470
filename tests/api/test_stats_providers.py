"""GET /stats/providers reads the health every task process writes to Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from market_data.policy import load_active_policy
from market_data.policy.schema import SyntheticFaults
from market_data.providers.synthetic import SyntheticProvider
from market_data.registry import AllProvidersFailed, ProviderRegistry
from market_data.settings import get_settings

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


async def test_live_scores_breakers_and_disabled_providers_with_reasons(
    client: AsyncTestClient, conn
) -> None:
    policy = (await load_active_policy(conn, get_settings().policy_file)).policy
    # a "task process": the primary fails every call, the backup answers
    worker = ProviderRegistry.shared(
        policy,
        get_settings(),
        retry_wait=lambda _s: 0.0,
        adapters={
            "synthetic": SyntheticProvider("synthetic", SyntheticFaults(error_rate=1.0), clock=lambda: NOW),
            "synthetic_backup": SyntheticProvider("synthetic_backup", clock=lambda: NOW),
        },
    )
    # pinned to the primary: 1 try + 2 retries per call; the 5th failure opens the breaker
    for _ in range(2):
        with pytest.raises(AllProvidersFailed):
            await worker.fetch_quotes(["AAPL"], "XNYS", preferred=["synthetic"])
    out = await worker.fetch_quotes(["AAPL"], "XNYS")
    assert out.provider == "synthetic_backup"
    await worker.aclose()

    r = await client.get("/stats/providers")
    assert r.status_code == 200
    body = r.json()
    assert body["shared_state"] is True
    by_name = {p["name"]: p for p in body["providers"]}
    assert set(by_name) == {"synthetic", "synthetic_backup", "finnhub", "yahoo", "alpaca"}
    primary, backup = by_name["synthetic"], by_name["synthetic_backup"]
    assert primary["breaker"] == "open" and "synthetic 500" in primary["breaker_reason"]
    assert primary["health"]["error_rate"] == 1.0 and len(primary["samples"]) == 5
    assert backup["breaker"] == "closed" and backup["health"]["error_rate"] == 0.0
    assert backup["health"]["latency_p50_ms"] is not None and backup["health"]["latency_p95_ms"] is not None
    assert backup["score"] > primary["score"]
    assert [p["name"] for p in body["providers"]][:2] == ["synthetic_backup", "synthetic"]
    for disabled in ("finnhub", "yahoo", "alpaca"):
        assert by_name[disabled]["available"] is False
        assert by_name[disabled]["reason"].startswith("disabled by policy")
        assert by_name[disabled]["score"] is None
    assert "no credentials" in by_name["finnhub"]["reason"]
    assert msgspec.json.decode(r.content)  # plain JSON throughout
