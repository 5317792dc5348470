"""The OpenAPI page documents every /stocks operation: ids, summaries, parameters, errors."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

OPERATIONS = {
    "/stocks/{symbol}/price": "getPrice",
    "/stocks/{symbol}/history": "getHistory",
    "/stocks/{symbol}/intraday": "getIntraday",
    "/stocks/{symbol}/coverage": "getCoverage",
    "/stocks/{symbol}/versions": "getBarVersions",
    "/stocks/bars": "getBarsMulti",
    "/stocks/snapshots": "getSnapshots",
}


async def test_every_stocks_operation_is_documented(client: AsyncTestClient) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    paths = doc["paths"]
    for path, operation_id in OPERATIONS.items():
        op = paths[path]["get"]
        assert op["operationId"] == operation_id
        assert op["summary"] and op["description"], path
        for status in ("200", "400", "404"):
            assert status in op["responses"], (path, status)
        for status in ("400", "404"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
        for p in op.get("parameters", []):
            assert p.get("description"), (path, p["name"])


async def test_parameters_carry_their_bounds(client: AsyncTestClient) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    paths = doc["paths"]
    assert doc["components"]["schemas"]["Align"]["enum"] == ["session", "clock"]

    def param(path: str, name: str) -> dict:
        return next(p for p in paths[path]["get"]["parameters"] if p["name"] == name)

    history = "/stocks/{symbol}/history"
    limit = param(history, "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200_000)  # a CSV page; JSON pages say 10,000
    assert "10000" in param(history, "limit")["description"]
    bars_limit = param("/stocks/bars", "limit")["schema"]
    assert (bars_limit["minimum"], bars_limit["maximum"]) == (1, 10_000)
    for path in (history, "/stocks/bars", "/stocks/{symbol}/intraday", "/stocks/{symbol}/coverage"):
        interval = param(path, "interval")
        assert "pattern" in str(interval["schema"]) and "1m-59m" in interval["description"], path
    assert param(history, "align")["schema"]["allOf"] == [{"$ref": "#/components/schemas/Align"}]
    assert param(history, "symbol")["schema"]["maxLength"] == 15
    assert "pattern" in param(history, "symbol")["schema"]
    for name in ("interval", "start", "end", "as_of", "sort", "format", "page_token"):
        assert param(history, name)["in"] == "query"
    assert param("/stocks/bars", "symbols")["required"] is True
    assert param("/stocks/snapshots", "symbols")["required"] is True
    assert param("/stocks/{symbol}/versions", "ts")["required"] is True
    ok = paths[history]["get"]["responses"]["200"]["content"]
    assert set(ok) == {"application/json", "text/csv", "application/vnd.apache.parquet"}
