"""`[celery] celery_config_options` of this project: Airflow's default Celery settings, with the
task code imported once in each worker before its pool forks.

A task process is forked from the process that supervises it: under LocalExecutor, from the
scheduler's executor workers, which have long imported the plugin's timetables and with them
pandas, numpy and exchange_calendars; under CeleryExecutor, from a worker's pool process, which
has only Airflow and Celery. Without this every task process on a Celery worker imported them
itself (about 0.4 s of CPU each; the steady 10,000-symbol sweep's 40 batch tasks spent ~10 s
more CPU than on LocalExecutor). Importing them here, in the worker's main process when Airflow
builds its Celery app, lets every pool process and task inherit them. The scheduler and the
api-server import this too (they build the same app): they import the plugin anyway.
"""

from __future__ import annotations

import importlib
import pkgutil

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

import market_data.airflow

CELERY_CONFIG = DEFAULT_CELERY_CONFIG
"""The settings Airflow builds from its configuration ([celery], broker transport options)."""

PRELOADED = [
    importlib.import_module(f"market_data.airflow.{m.name}").__name__
    for m in pkgutil.iter_modules(market_data.airflow.__path__)
    if m.name != "celery_config"
]
"""The task code (every module of market_data.airflow: task bodies, timetables, connections)."""
