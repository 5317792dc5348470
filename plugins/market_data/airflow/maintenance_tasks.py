"""Body of md_maintenance's task."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from market_data.airflow.connections import market_data_dsn
from market_data.db import connect
from market_data.maintenance import MaintenanceResult, run_maintenance
from market_data.policy import load_active_policy
from market_data.settings import get_settings


def maintain() -> dict[str, Any]:
    async def go() -> MaintenanceResult:
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, get_settings().policy_file)
            return await run_maintenance(conn, loaded.policy)
        finally:
            await conn.close()

    result = asyncio.run(go())
    if result.partition_errors:
        raise RuntimeError(f"partitions not created: {result.partition_errors}")
    return msgspec.to_builtins(result)
