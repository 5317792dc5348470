"""Body of the md_corporate_actions DAG's task, and its trigger Param's schema."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from market_data.airflow.connections import market_data_dsn
from market_data.corporate_action_sync import (
    MAX_SYMBOLS,
    ActionSyncRefused,
    ActionSyncRequest,
    sync_corporate_actions,
)
from market_data.db import connect
from market_data.policy import load_active_policy
from market_data.records import SYMBOL_PATTERN, utcnow
from market_data.registry import ProviderRegistry
from market_data.settings import get_settings

log = logging.getLogger(__name__)

REQUEST_PARAM = "request"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def request_schema() -> dict[str, Any]:
    """JSON Schema of the manual trigger's `request` (Airflow checks it when a run is created)."""
    day = {"type": ["string", "null"], "pattern": DATE_PATTERN}
    return {
        "type": ["object", "null"],
        "properties": {
            "symbols": {
                "type": ["array", "null"],
                "items": {"type": "string", "pattern": SYMBOL_PATTERN},
                "minItems": 1,
                "maxItems": MAX_SYMBOLS,
            },
            "start": day,
            "end": day,
        },
        "additionalProperties": False,
    }


REQUEST_DESCRIPTION = (
    'Null for the scheduled pull, or e.g. {"symbols": ["AAPL"], "start": "2000-01-01", "end": "2026-12-31"}: '
    "ex-dates in [start, end] (YYYY-MM-DD; default the last 30 days to the next 90, or from 2000-01-01 "
    "while no action is stored), symbols of the active universe (default every active equity)."
)


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def sync() -> dict[str, Any]:
    """Pull the corporate actions of every provider that has them; store new versions.

    A version's `as_of` is when this task learned it (the wall clock, not the run's logical
    date: a late or re-run run must not claim it knew earlier); a re-run stores nothing new.
    """
    ctx = _context()
    now = utcnow()
    raw = (ctx.get("params") or {}).get(REQUEST_PARAM)
    try:
        req = msgspec.convert(raw or {}, ActionSyncRequest, strict=False)
    except msgspec.ValidationError as exc:
        raise ActionSyncRefused(f"request: {exc}") from None

    async def go() -> dict[str, Any]:
        settings = get_settings()
        conn = await connect(market_data_dsn())
        try:
            loaded = await load_active_policy(conn, settings.policy_file)
            log.info("policy version %d (%s) in effect for this run", loaded.version, loaded.source)
            registry = ProviderRegistry.shared(loaded.policy, settings)
            try:
                report = await sync_corporate_actions(conn, registry, req, now)
            finally:
                await registry.aclose()
        finally:
            await conn.close()
        log.info(
            "corporate actions %s..%s: fetched %s, stored %d new versions, unknown tickers %s, errors %s",
            report.start,
            report.end,
            report.fetched,
            report.stored,
            sorted(set(report.unknown)),
            report.errors,
        )
        return msgspec.to_builtins(report)

    return asyncio.run(go())
