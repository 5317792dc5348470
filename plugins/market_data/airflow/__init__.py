"""The only part of market_data that imports Airflow: connections, task bodies, timetables.

Everything else in the package runs without Airflow (the API, tests, scripts).
"""
