"""The Airflow plugin of the market-data service: registers the sweep timetable."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from market_data.airflow.timetables import BackfillTimetable, SessionCadenceTimetable


class MarketDataPlugin(AirflowPlugin):
    name = "market_data"
    timetables = [SessionCadenceTimetable, BackfillTimetable]
