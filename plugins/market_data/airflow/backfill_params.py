"""md_backfill's `request` Param: a manual request's JSON schema, checked against the policy at trigger time.

Airflow validates a DAG's Params whenever it creates a run, however the run is triggered: the
REST API (which the UI's trigger form uses) and `airflow dags trigger` both end in
`create_dagrun`, which validates each Param on its own with
`jsonschema.validate(value, schema, format_checker=FormatChecker())` and refuses the run with
`ParamValidationError` (HTTP 400 / a CLI error). What that allows:

- each Param is checked alone, so a rule over several fields (end - start against
  `backfill.max_range`, a start against an interval's `max_age`) needs them in one Param:
  the request is one object, `{"request": {"symbols", "interval", "start", "end"}}`;
- JSON Schema has no "now": an age limit is not a schema constant, and the universe and the
  active policy live in Postgres, which parse time must not touch;
- `format: date-time` is not checked (it needs the rfc3339-validator package), so timestamps
  are a pattern;
- the validator class comes from the schema's `$schema` (jsonschema's `validator_for`).

So the schema, built from the policy file when the DAG is parsed, declares the shape, and its
`$schema` names a JSON Schema dialect of ours (draft 2020-12 plus the keyword
`x-market-data-policy`) whose validator checks the request with the one rule of manual
backfills (`market_data.backfill.manual.check_manual`) against the active policy and universe,
read from the market-data database when the run is created. The refusal is
`md_backfill conf refused: <every reason>`, the message the run's first task logs for a request
that became invalid between trigger and run (the task checks again; so does POST /ops/backfill).

The dialect is registered when this module is imported: by the DAG file, and by the plugin,
which every Airflow process loads before it can deserialize md_backfill (its timetable is a
plugin timetable), so the check is in place wherever md_backfill runs are created. Where
Postgres cannot be read at trigger time, the run is created and its first task decides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import msgspec
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from market_data.airflow.connections import scheduler_market_data_dsn
from market_data.backfill.manual import (
    ISO_WITH_OFFSET,
    MAX_SYMBOLS,
    ManualBackfill,
    check_manual,
    trigger_refusal,
)
from market_data.policy.reader import PolicyReader
from market_data.policy.schema import Policy
from market_data.records import SYMBOL_PATTERN, Interval, utcnow
from market_data.universe import active_universe_blocking

log = logging.getLogger(__name__)

REQUEST_PARAM = "request"
"""The conf key of a manual request: `{"request": {"symbols": [...], ...}}`."""
DIALECT = "urn:market-data:schema:md-backfill-request"
"""`$schema` of the request Param: draft 2020-12 plus POLICY_KEYWORD."""
POLICY_KEYWORD = "x-market-data-policy"

_POLICY = PolicyReader(ttl=10.0)
"""The active policy as trigger-time checks read it (Postgres, else the policy file)."""


def request_schema() -> dict[str, Any]:
    """The Param's JSON schema: the shape, and the policy check (POLICY_KEYWORD) of our dialect."""
    timestamp = {"type": "string", "pattern": ISO_WITH_OFFSET}
    return {
        "$schema": DIALECT,
        "type": ["object", "null"],
        "properties": {
            "symbols": {
                "type": "array",
                "items": {"type": "string", "pattern": SYMBOL_PATTERN},
                "minItems": 1,
                "maxItems": MAX_SYMBOLS,
            },
            "interval": {"type": "string", "enum": [iv.value for iv in Interval]},
            "start": timestamp,
            "end": timestamp,
        },
        "required": ["symbols", "interval", "start", "end"],
        "additionalProperties": False,
        POLICY_KEYWORD: "manual-backfill",
    }


def _max_ranges(policy: Policy) -> str:
    """`1m 30d, ..., 1d 3660d`: the longest range of each interval."""
    return ", ".join(f"{iv.value} {policy.backfill.max_range_for(iv).text}" for iv in Interval)


def _max_ages(policy: Policy) -> str:
    """`1m 730d, ..., 1d 18250d`: how far back each interval may start."""
    return ", ".join(f"{iv.value} {policy.backfill.max_age_for(iv).text}" for iv in Interval)


def request_description(policy: Policy) -> str:
    """The trigger form's help, with the limits of `policy` (the policy file, at parse time)."""
    return (
        "A manual backfill, or null to only drain the queue, e.g. "
        '{"symbols": ["AAPL"], "interval": "1m", "start": "2026-11-20T14:30:00Z", '
        '"end": "2026-11-20T21:00:00Z"}: ISO 8601 with an offset, end exclusive, symbols of the '
        f"active universe, at most backfill.max_range ({_max_ranges(policy)} in the policy "
        f"file) long, starting within backfill.max_age ({_max_ages(policy)}). Checked "
        "against the active policy and universe when the run is created."
    )


def refusal(request: dict[str, Any]) -> str | None:
    """Why the active policy refuses a well-formed request now (None: accepted, or not checkable).

    Reads the active policy and universe from the market-data database; when it cannot be read
    the request passes here and the run's first task checks it.
    """
    try:
        req = msgspec.convert(request, ManualBackfill, strict=False)
    except msgspec.ValidationError as exc:
        return trigger_refusal(exc)
    loaded = _POLICY.get_blocking(scheduler_market_data_dsn)
    try:
        known = active_universe_blocking(scheduler_market_data_dsn())
    except Exception as exc:  # a trigger is never refused because Postgres is away
        log.warning("md_backfill request not checked at trigger time (%s); its run will check it", exc)
        return None
    if loaded is None:
        return None
    problems = check_manual(req, loaded.policy, utcnow(), known)
    return trigger_refusal("; ".join(str(p) for p in problems)) if problems else None


def _policy_keyword(
    validator: Any, value: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # null drains the queue; a malformed request is reported by the structural keywords alone
    shape = {k: v for k, v in schema.items() if k not in ("$schema", POLICY_KEYWORD)}
    if not isinstance(instance, dict) or not Draft202012Validator(shape).is_valid(instance):
        return
    reason = refusal(instance)
    if reason:
        yield ValidationError(reason)


RequestValidator = validators.create(
    meta_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": DIALECT,
        "$ref": "https://json-schema.org/draft/2020-12/schema",
    },
    validators={**Draft202012Validator.VALIDATORS, POLICY_KEYWORD: _policy_keyword},
    version="md-backfill-request",
)
"""Registered for DIALECT on import: `jsonschema.validate` picks it for the request Param."""
