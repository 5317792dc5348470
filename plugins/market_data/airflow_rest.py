"""Airflow's public REST API v2, over HTTP (no Airflow import): asset events and task instances.

The API posts an asset event that wakes md_backfill when it queues jobs, and `./dev integrity`
reads md_backfill's failed task instances; both act as an Airflow user of their own
(`MD_AIRFLOW_API_USER`, role `op` in ./dev and docker-compose). Its password is
`MD_AIRFLOW_API_PASSWORD` when set, else the user's entry in `MD_AIRFLOW_API_CREDENTIALS_FILE`:
the simple auth manager's generated passwords file, so no password is ever fixed in
configuration. A JWT comes from `POST /auth/token` and is used until Airflow refuses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from market_data.settings import Settings

log = logging.getLogger(__name__)

BACKFILL_QUEUE_ASSET = "md_backfill_queue"
"""The asset whose events wake md_backfill: queued backfill jobs wait for it."""
PAGE = 100
"""Airflow's default `[api] maximum_page_limit`."""


class AirflowUnavailable(RuntimeError):
    """Airflow's REST API cannot be used: not configured, not reachable, or it refused us."""


class AirflowRest:
    """A small client of Airflow's REST API v2 (one httpx client; call `aclose` when done)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        *,
        password: str = "",
        credentials_file: Path | None = None,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._credentials_file = credentials_file
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._token: str | None = None
        self._asset_ids: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 5.0) -> AirflowRest | None:
        """The client the settings describe; None when no Airflow URL is configured."""
        if not settings.airflow_api_url:
            return None
        return cls(
            settings.airflow_api_url,
            settings.airflow_api_user,
            password=settings.airflow_api_password,
            credentials_file=settings.airflow_api_credentials_file,
            timeout=timeout,
        )

    def describe(self) -> str:
        return f"{self.base_url} as {self.username}"

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- authentication --------------------------------------------------------------------
    def _password_now(self) -> str:
        if self._password:
            return self._password
        path = self._credentials_file
        if path is None:
            raise AirflowUnavailable(
                "no Airflow password: set MD_AIRFLOW_API_PASSWORD or MD_AIRFLOW_API_CREDENTIALS_FILE"
            )
        try:
            found = json.loads(path.read_text()).get(self.username)
        except (OSError, ValueError) as exc:
            raise AirflowUnavailable(f"cannot read the Airflow credentials file {path}: {exc}") from exc
        if not found:
            raise AirflowUnavailable(f"{path} holds no password of Airflow user {self.username!r}")
        return str(found)

    async def _fresh_token(self) -> str:
        try:
            r = await self._client.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self._password_now()},
            )
        except httpx.HTTPError as exc:
            raise AirflowUnavailable(f"Airflow at {self.base_url} is not reachable: {exc!r}") from exc
        if r.status_code not in (200, 201):
            raise AirflowUnavailable(
                f"Airflow at {self.base_url} refused user {self.username!r}: HTTP {r.status_code}"
            )
        token = r.json().get("access_token")
        if not token:
            raise AirflowUnavailable(f"Airflow at {self.base_url} answered /auth/token without a token")
        return str(token)

    async def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """JSON of `METHOD /api/v2<path>`; a new token once if the kept one is refused."""
        for attempt in (1, 2):
            async with self._lock:
                if self._token is None:
                    self._token = await self._fresh_token()
                token = self._token
            try:
                r = await self._client.request(
                    method,
                    f"{self.base_url}/api/v2{path}",
                    json=body,
                    params={k: v for k, v in params.items() if v is not None} or None,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                raise AirflowUnavailable(f"Airflow at {self.base_url} is not reachable: {exc!r}") from exc
            if r.status_code == 401 and attempt == 1:
                async with self._lock:
                    if self._token == token:
                        self._token = None
                continue
            if r.status_code >= 400:
                raise AirflowUnavailable(f"{method} /api/v2{path}: HTTP {r.status_code}: {r.text[:300]}")
            return r.json()
        raise AirflowUnavailable(f"{method} /api/v2{path}: HTTP 401 with a fresh token")

    # -- assets ----------------------------------------------------------------------------
    async def asset_id(self, name: str) -> int:
        """Airflow's id of the asset called `name` (it exists once a DAG that uses it is parsed)."""
        if name not in self._asset_ids:
            found = await self.request("GET", "/assets", name_pattern=name, limit=PAGE)
            ids = [a["id"] for a in found.get("assets", []) if a.get("name") == name]
            if not ids:
                raise AirflowUnavailable(f"Airflow knows no asset {name!r} (are the DAGs parsed?)")
            self._asset_ids[name] = int(ids[0])
        return self._asset_ids[name]

    async def post_asset_event(self, name: str, extra: dict[str, Any] | None = None) -> int:
        """Record an event of asset `name` (the DAGs scheduled on it run); returns the event id."""
        event = await self.request(
            "POST", "/assets/events", {"asset_id": await self.asset_id(name), "extra": extra or {}}
        )
        return int(event["id"])

    # -- task instances --------------------------------------------------------------------
    async def task_instances(
        self,
        dag_id: str,
        *,
        states: Iterable[str] | None = None,
        run_ids: Iterable[str] | None = None,
        task_ids: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Every task instance of `dag_id` (mapped ones one by one) matching the filters, all pages."""
        body: dict[str, Any] = {"dag_ids": [dag_id], "page_limit": PAGE, "order_by": "id"}
        for key, values in (("state", states), ("dag_run_ids", run_ids), ("task_ids", task_ids)):
            if values is not None:
                body[key] = sorted(set(values))
        out: list[dict[str, Any]] = []
        while True:
            page = await self.request(
                "POST", "/dags/~/dagRuns/~/taskInstances/list", {**body, "page_offset": len(out)}
            )
            items = page.get("task_instances", [])
            out.extend(items)
            if not items or len(out) >= int(page.get("total_entries", 0)):
                return out
