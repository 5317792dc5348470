"""/ops/validate, /ops/reload and the policy version endpoints."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody, Parameter

from api.errors import Conflict, NotFound, Refused
from api.ops.audit import audit_detail, audited_refusal
from api.ops.auth import ops_actor
from api.ops.schemas import OPS_ERRORS
from api.schemas import INT4_MAX, REFUSED, TOO_LARGE, ErrorBody, ResponseModel, ValidationReport, documented
from api.state import Resources
from market_data.policy import PolicyError
from market_data.policy.schema import enc_hook
from market_data.policy.store import (
    PolicyConflict,
    PolicyVersion,
    PolicyVersionNotFound,
    active_version,
    list_versions,
    reload_policy,
    rollback_policy,
)
from market_data.policy.validation import checked_policy


class PolicyCandidate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    policy: Annotated[str, msgspec.Meta(max_length=262_144, description="The policy document (TOML text)")]
    expected_active: int | None = None
    """Refuse (409) unless this version is the active one: protects against lost updates."""


class ReloadResult(ResponseModel, kw_only=True):
    ok: bool
    created: bool
    """False when the candidate is identical to the active version (nothing stored)."""
    version: PolicyVersion


class ActivePolicy(ResponseModel, kw_only=True):
    version: PolicyVersion
    body: str
    """The TOML text as stored."""
    policy: dict[str, object]
    """The same document decoded, with every default filled in."""


class PolicyOpsController(Controller):
    tags = ["ops"]

    @post(
        "/ops/validate",
        operation_id="validatePolicy",
        summary="Validate a candidate policy",
        description="Checks a candidate and returns every problem with its path, or ok. Stores nothing.",
        status_code=200,
        responses={**OPS_ERRORS, 413: TOO_LARGE, 422: REFUSED},
    )
    async def validate(self, resources: Resources, data: JSONBody[PolicyCandidate]) -> ValidationReport:
        try:
            checked_policy(data.policy, resources.known_pools)
        except PolicyError as exc:
            raise Refused(exc.problems) from exc
        return ValidationReport.of([])

    @post(
        "/ops/reload",
        operation_id="reloadPolicy",
        summary="Validate, store and activate a policy",
        description=(
            "Validates the candidate, stores it as the next version and makes it active in one "
            "transaction, recording who and when. An invalid candidate changes nothing (422). DAG "
            "runs use it from their next run; API processes at once."
        ),
        status_code=200,
        responses={
            **OPS_ERRORS,
            409: documented(ErrorBody, description="expected_active is stale"),
            413: TOO_LARGE,
            422: REFUSED,
        },
    )
    async def reload(
        self, request: Request, resources: Resources, data: JSONBody[PolicyCandidate]
    ) -> ReloadResult:
        try:
            async with resources.db.acquire() as conn:
                version, created = await reload_policy(
                    conn,
                    data.policy,
                    actor=ops_actor(request),
                    known_pools=resources.known_pools,
                    expected_active=data.expected_active,
                )
        except PolicyError as exc:
            raise audited_refusal(request, exc.problems) from exc
        except PolicyConflict as exc:
            raise Conflict(str(exc), parameter="expected_active") from exc
        resources.policy.invalidate()
        audit_detail(request, version=version.version, created=created)
        return ReloadResult(ok=True, created=created, version=version)

    @post(
        "/ops/policy/rollback/{version:int}",
        operation_id="rollbackPolicy",
        summary="Activate an earlier policy version again",
        description="Stores the body of `version` as a new version and activates it.",
        status_code=200,
        responses={
            **OPS_ERRORS,
            404: documented(ErrorBody, description="No such version"),
            422: REFUSED,
        },
    )
    async def rollback(
        self,
        request: Request,
        resources: Resources,
        version: Annotated[int, Parameter(ge=1, le=INT4_MAX, description="Version to return to")],
    ) -> ReloadResult:
        try:
            async with resources.db.acquire() as conn:
                stored, created = await rollback_policy(
                    conn, version, actor=ops_actor(request), known_pools=resources.known_pools
                )
        except PolicyVersionNotFound as exc:
            raise NotFound(f"version: {version} is not stored", parameter="version") from exc
        except PolicyError as exc:
            raise Refused(exc.problems) from exc
        resources.policy.invalidate()
        audit_detail(request, rolled_back_to=version, version=stored.version)
        return ReloadResult(ok=True, created=created, version=stored)

    @get(
        "/ops/policy",
        operation_id="getActivePolicy",
        summary="The active policy version and body",
        responses={**OPS_ERRORS, 404: documented(ErrorBody, description="No policy stored yet")},
    )
    async def active(self, resources: Resources) -> ActivePolicy:
        async with resources.db.acquire() as conn:
            found = await active_version(conn)
        if found is None:
            raise NotFound("no policy version is stored yet")
        version, body = found
        policy = checked_policy(body) if body else None
        return ActivePolicy(version=version, body=body, policy=msgspec.to_builtins(policy, enc_hook=enc_hook))

    @get(
        "/ops/policy/versions",
        operation_id="listPolicyVersions",
        summary="Stored policy versions, newest first",
        responses=OPS_ERRORS,
    )
    async def versions(
        self,
        resources: Resources,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="How many")] = 100,
    ) -> list[PolicyVersion]:
        async with resources.db.acquire() as conn:
            return await list_versions(conn, limit)
