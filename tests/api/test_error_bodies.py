"""Error bodies name the parameter, and a malformed Accept header never becomes a 500."""

from __future__ import annotations

from litestar import Litestar, Request, get
from litestar.params import FromQuery
from litestar.testing import AsyncTestClient

from api.errors import EXCEPTION_HANDLERS, AcceptHeaderGuard
from market_data.settings import get_settings

MALFORMED_ACCEPT = [
    "text/csv;q=1e999",
    "application/json;q=1e999",
    "*/*;q=-1e999, text/*;q=nan",
    "text/csv;q=1e999, application/json;q=0.5",
]


@get("/count")
async def count(n: FromQuery[int]) -> dict[str, int]:
    return {"n": n}


@get("/negotiate")
async def negotiate(request: Request) -> dict[str, str]:
    return {"best": request.accept.best_match(["application/json", "text/csv"], default="none")}


def _app() -> Litestar:
    return Litestar(
        route_handlers=[count, negotiate],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[AcceptHeaderGuard()],
    )


async def test_a_missing_required_query_parameter_is_named() -> None:
    async with AsyncTestClient(app=_app()) as c:
        r = await c.get("/count")
        assert r.status_code == 400
        assert r.json() == {
            "status_code": 400,
            "detail": "n: missing required query parameter",
            "parameter": "n",
        }
        r = await c.get("/count", params={"n": "x"})
        assert r.status_code == 400 and r.json()["parameter"] == "n"


async def test_the_accept_guard_turns_a_malformed_header_into_any() -> None:
    async with AsyncTestClient(app=_app()) as c:
        for accept in MALFORMED_ACCEPT:
            r = await c.get("/negotiate", headers={"Accept": accept})
            assert r.status_code == 200, accept
            assert r.json() == {"best": "application/json"}
        r = await c.get("/negotiate", headers={"Accept": "text/csv, application/json;q=0.5"})
        assert r.json() == {"best": "text/csv"}  # a well-formed header still negotiates


async def test_no_endpoint_answers_a_malformed_accept_header_with_a_500(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    token = {"Authorization": f"Bearer {get_settings().ops_token}"}
    values = {"symbol": "AAPL", "interval": "1m", "source": "synthetic", "version": "1", "job_id": "1"}
    checked = 0
    for path, item in schema["paths"].items():
        if "get" not in item:
            continue
        url = path
        for name, value in values.items():
            url = url.replace("{" + name + "}", value)
        for accept in MALFORMED_ACCEPT:
            r = await client.get(url, headers={"Accept": accept, **token})
            assert r.status_code != 500, (path, accept, r.text[:200])
            checked += 1
    assert checked >= 4 * 10
