"""What tests/security/test_openapi_fuzz.py found, pinned as plain requests.

Each case is a request the API once answered against its own OpenAPI document: a 500, an
undocumented status, or an answer the document did not describe.
"""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from market_data.settings import get_settings


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().ops_token}"}


@pytest.mark.parametrize(
    "method,path,parameter",
    [
        ("POST", "/ops/policy/rollback/58037015739", "version"),  # over int4: was a 500
        ("POST", "/ops/dlq/backfills/requeue/18950779983981076480", "job_id"),  # over int8: was a 500
        ("GET", "/ops/dlq/backfills?before_id=1314808625831221657600", "before_id"),  # was a 500
        ("GET", "/ops/cursor/AAPL/2m/synthetic", "interval"),
        ("GET", "/ops/cursor/AA$PL/1m/synthetic", "symbol"),
    ],
)
async def test_out_of_range_ids_and_malformed_path_parts_are_400s(
    client: AsyncTestClient, method: str, path: str, parameter: str
) -> None:
    r = await client.request(method, path, headers=auth())
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == parameter


@pytest.mark.parametrize("value", ["7", "-5", "1.5", "20261123", "1e9"])
async def test_a_bare_number_is_not_an_instant(client: AsyncTestClient, value: str) -> None:
    # msgspec's lax conversion read these as Unix seconds: `end=20261123` was a day in 1970
    r = await client.get("/stocks/AAPL/history", params={"end": value})
    assert r.status_code == 400 and r.json()["parameter"] == "end", r.text
    r = await client.get("/stats/slo", params={"since": value})
    assert r.status_code == 400 and r.json()["parameter"] == "since", r.text


async def test_symbols_are_ascii_tickers_separated_by_commas_and_spaces(client: AsyncTestClient) -> None:
    ok = await client.get("/stocks/snapshots", params={"symbols": " aapl , ,MSFT,"})
    assert ok.status_code == 200 and list(ok.json()["snapshots"]) == ["AAPL", "MSFT"]
    for symbols in ("\u017fPY", "AAPL,\tMSFT"):  # long s upper-cases to S; only spaces are trimmed
        r = await client.get("/stocks/snapshots", params={"symbols": symbols})
        assert r.status_code == 400 and r.json()["parameter"] == "symbols", (symbols, r.text)
    r = await client.get("/stocks/snapshots", params={"symbols": "null"})
    assert r.status_code == 404  # a ticker named NULL, not a way to leave the parameter out


async def test_required_parameters_are_not_nullable(client: AsyncTestClient) -> None:
    r = await client.get("/stocks/AAPL/versions")
    assert r.status_code == 400 and r.json()["parameter"] == "ts"
    doc = (await client.get("/schema/openapi.json")).json()
    params = {p["name"]: p for p in doc["paths"]["/stocks/{symbol}/versions"]["get"]["parameters"]}
    assert params["ts"]["schema"]["type"] == "string" and params["ts"]["required"] is True


async def test_request_bodies_document_what_msgspec_enforces(client: AsyncTestClient) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    backfill, candidate = schemas["ManualBackfill"], schemas["PolicyCandidate"]
    assert backfill["additionalProperties"] is False and candidate["additionalProperties"] is False
    assert backfill["properties"]["symbols"]["items"]["pattern"] == r"^[A-Z0-9][A-Z0-9.\-]{0,14}$"
    r = await client.post("/ops/validate", json={"policy": "", "colour": "red"}, headers=auth())
    assert r.status_code == 400 and "colour" in r.json()["detail"]


async def test_body_size_refusals_are_documented(client: AsyncTestClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("/ops/validate", "/ops/reload", "/ops/backfill"):
        assert "413" in paths[path]["post"]["responses"], path


def test_every_app_of_a_process_refuses_bare_numbers() -> None:
    """The check's per-handler names once lived in a dict keyed by id(handler): a later app's
    handler at a recycled address read another handler's (none), and let `end=7` through."""
    import gc

    from litestar.testing import TestClient

    from api.app import create_app
    from market_data.settings import get_settings

    passed = 0
    for _ in range(40):
        app = create_app(get_settings())
        with TestClient(app) as c:
            passed += c.get("/stocks/AAPL/history", params={"end": "7"}).status_code != 400
            passed += c.get("/stats/slo", params={"since": "7"}).status_code != 400
        del app, c
        gc.collect()
    assert passed == 0
