"""Waking md_backfill when the API queues jobs: an asset event through Airflow's REST API.

md_backfill runs on its policy cadence or on an event of the `md_backfill_queue` asset,
whichever comes first. After `POST /ops/backfill` queues jobs, the API posts such an event
(after the 202 is sent), so the jobs start within seconds. A wake-up that fails (Airflow not
configured, not reachable, refusing the API's user) is logged and counted in
`backfill_wakeups_total{outcome="failed"}` and never fails the request: the jobs are queued,
and the next cadence run picks them up.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from api.state import AppResources
from market_data.airflow_rest import BACKFILL_QUEUE_ASSET

log = logging.getLogger(__name__)


class BackfillWakeup:
    def __init__(self, resources: AppResources, counter: Counter) -> None:
        self._resources = resources
        self._counter = counter

    async def wake(self, request_id: int) -> bool:
        """Post the asset event that starts md_backfill; True when Airflow recorded it."""
        airflow = self._resources.airflow
        if airflow is None:
            log.info(
                "backfill request %d queued; MD_AIRFLOW_API_URL is not set: md_backfill's cadence runs it",
                request_id,
            )
            return False
        try:
            event = await airflow.post_asset_event(
                BACKFILL_QUEUE_ASSET, {"request_id": request_id, "source": "api"}
            )
        except Exception as exc:  # whatever went wrong, the request stays accepted
            self._counter.labels(outcome="failed").inc()
            log.warning(
                "backfill request %d queued, but md_backfill could not be woken (%s): "
                "its cadence will run it. %s: %s",
                request_id,
                airflow.describe(),
                type(exc).__name__,
                exc,
            )
            return False
        self._counter.labels(outcome="ok").inc()
        log.info("backfill request %d queued; md_backfill woken (asset event %d)", request_id, event)
        return True
