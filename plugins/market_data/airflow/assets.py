"""The Airflow assets of the market-data DAGs."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from market_data.airflow_rest import BACKFILL_QUEUE_ASSET

BACKFILL_QUEUE = Asset(name=BACKFILL_QUEUE_ASSET)
"""Queued backfill jobs: md_backfill runs on its events (and on its cadence). Sweeps that queue
gaps emit them, and so does the API (over Airflow's REST API) after POST /ops/backfill."""

BACKFILL_QUEUED = AssetAlias(name="md_backfill_queued")
"""The outlet of a sweep batch: an event of BACKFILL_QUEUE is added through it only when the
batch queued a job (an Asset outlet would emit on every success)."""
