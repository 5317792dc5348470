"""GET /stocks/{symbol}/corporate-actions, GET /corporate-actions?since=, and the WebSocket message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from litestar.testing import AsyncTestClient

from market_data.corporate_actions import record_actions
from tests.api.ws_harness import connect, live_server, recv, subscribe
from tests.corporate_actions_data import AAPL_SPLIT as SPLIT
from tests.corporate_actions_data import MSFT_DIVIDEND as DIVIDEND

T1 = datetime(2026, 1, 5, tzinfo=UTC)


async def test_a_symbols_actions_are_those_known_at_as_of(client: AsyncTestClient, conn) -> None:
    await record_actions(conn, [SPLIT], T1)
    await record_actions(conn, [SPLIT.cancellation()], T1 + timedelta(days=1))
    r = await client.get("/stocks/aapl/corporate-actions", params={"as_of": T1.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "AAPL" and body["tickers"][0]["ticker"] == "AAPL"
    (split,) = body["actions"]
    assert (split["kind"], split["ex_date"], split["split_to"], split["cancelled"]) == (
        "split",
        "2020-08-31",
        4.0,
        False,
    )
    now = (await client.get("/stocks/AAPL/corporate-actions")).json()
    assert now["actions"] == []
    cancelled = (
        await client.get("/stocks/AAPL/corporate-actions", params={"include_cancelled": "true"})
    ).json()
    assert [a["cancelled"] for a in cancelled["actions"]] == [True]
    assert (await client.get("/stocks/NOPE/corporate-actions")).status_code == 404


async def test_the_feed_lists_what_was_learned_since_in_pages(client: AsyncTestClient, conn) -> None:
    await record_actions(conn, [SPLIT, DIVIDEND], T1)
    await record_actions(conn, [msgspec.structs.replace(DIVIDEND, amount=0.76)], T1 + timedelta(hours=1))
    everything = (await client.get("/corporate-actions")).json()
    assert [a["symbol"] for a in everything["actions"]] == ["AAPL", "MSFT", "MSFT"]
    first = (await client.get("/corporate-actions", params={"limit": 1})).json()
    assert first["count"] == 1 and first["next_since"] is not None
    second = (
        await client.get(
            "/corporate-actions",
            params={"limit": 5, "since": first["next_since"], "after": first["next_after"]},
        )
    ).json()
    assert [a["action_key"] for a in first["actions"] + second["actions"]] == [
        a["action_key"] for a in everything["actions"]
    ]
    assert second["next_since"] is None
    later = (await client.get("/corporate-actions", params={"since": T1.isoformat()})).json()
    assert [a["amount"] for a in later["actions"]] == [0.76]
    bad = await client.get("/corporate-actions", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["parameter"] == "since"
    repeated = await client.get(
        "/corporate-actions", params=[("since", "2026-01-01T00:00:00Z"), ("since", "5000")]
    )
    assert repeated.status_code == 400 and repeated.json()["parameter"] == "since"


async def test_a_learned_action_reaches_websocket_clients_following_the_symbol(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL"])
        await record_actions(conn, [DIVIDEND], T1)  # MSFT: not followed
        await record_actions(conn, [SPLIT], T1)
        msg = await recv(ws)
        assert (msg["type"], msg["symbol"], msg["kind"], msg["split_to"]) == (
            "corporate_action",
            "AAPL",
            "split",
            4.0,
        )
        await ws.close()
