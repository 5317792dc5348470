"""The Airflow plugin of the market-data service: registers the timetables, and with them the
trigger-time check of md_backfill's manual request.

Every Airflow component loads this plugin before it can deserialize a market-data DAG (their
timetables are plugin timetables), so importing `backfill_params` here registers the JSON
Schema dialect of md_backfill's `request` Param wherever its runs are created (the api-server
for the REST API and the UI, the CLI for `airflow dags trigger`, the scheduler).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from market_data.airflow import backfill_params  # noqa: F401  (registers the request's dialect)
from market_data.airflow.timetables import BackfillTimetable, SessionCadenceTimetable


class MarketDataPlugin(AirflowPlugin):
    name = "market_data"
    timetables = [SessionCadenceTimetable, BackfillTimetable]
