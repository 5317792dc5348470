"""The Airflow plugin of the market-data service (timetables, listeners, macros)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class MarketDataPlugin(AirflowPlugin):
    name = "market_data"
