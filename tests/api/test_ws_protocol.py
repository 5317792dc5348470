"""WS /ws and /ws/{symbol}: requests, snapshots, validation of every frame, and the limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import pytest
import websockets

from api.ws.limits import WsLimits
from api.ws.protocol import decode_request, normalize_patterns
from market_data.ingest.pit_write import write_bars, write_quotes
from market_data.records import Interval, Quote
from tests.api.stocks_data import session_bars
from tests.api.ws_harness import (
    close_of,
    connect,
    live_server,
    notify_bar,
    notify_quote,
    recv,
    recv_until,
    send,
    subscribe,
)


async def _store_aapl(conn) -> None:
    await write_bars(conn, session_bars("AAPL", minutes=30), policy_version=1, advance_cursors=True)
    await write_bars(
        conn, session_bars("AAPL", Interval.M5, minutes=30), policy_version=1, advance_cursors=True
    )
    q = Quote(symbol="AAPL", ts=datetime(2026, 11, 23, 15, 0, 5, tzinfo=UTC), provider="synthetic", last=1.25)
    await write_quotes(conn, [q], policy_version=1)


async def test_subscribe_acks_then_snapshots_the_latest_bar_and_quote(conn) -> None:
    await _store_aapl(conn)
    async with live_server() as server:
        ws = await connect(server)
        ack, snap = await subscribe(ws, bars=["aapl", "MSFT"], quotes=["AAPL"], intervals=["1m", "5m"], id=7)
        assert ack == {
            "type": "subscribed",
            "bars": ["AAPL", "MSFT"],
            "quotes": ["AAPL"],
            "intervals": ["1m", "5m"],
            "subscriptions": 2,
            "id": 7,
        }
        assert snap["id"] == 7 and snap["truncated"] is False
        bars = {(b["symbol"], b["interval"]): b for b in snap["bars"]}
        assert set(bars) == {("AAPL", "1m"), ("AAPL", "5m")}  # MSFT has no bars: left out
        assert bars[("AAPL", "1m")]["ts"].startswith("2026-11-23T14:59:00")
        assert bars[("AAPL", "5m")]["ts"].startswith("2026-11-23T14:55:00")
        assert {"open", "high", "low", "close", "volume", "vwap", "provider", "as_of"} <= set(
            bars[("AAPL", "1m")]
        )
        assert [q["last"] for q in snap["quotes"]] == [1.25]
        # live updates follow, in the same shape as the snapshot entries (plus notified_at)
        await write_bars(
            conn,
            session_bars("AAPL", minutes=31)[-1:],
            policy_version=1,
            advance_cursors=True,
        )
        live = await recv(ws)
        assert live["type"] == "bar" and live["ts"].startswith("2026-11-23T15:00:00")
        assert set(live) == set(bars[("AAPL", "1m")]) | {"notified_at"}
        await ws.close()


async def test_a_timeframe_built_on_read_snapshots_its_newest_built_bar(conn) -> None:
    await write_bars(conn, session_bars("AAPL", minutes=90), policy_version=1, advance_cursors=True)
    async with live_server() as server:
        ws = await connect(server)
        ack, snap = await subscribe(ws, bars=["AAPL"], intervals=["1h", "1d"])
        assert ack["intervals"] == ["1h", "1d"]
        bars = {b["interval"]: b for b in snap["bars"]}
        # AAPL stores 1m: its 1h and 1d bars are built, the newest of each with how complete it is
        assert bars["1h"]["ts"] == "2026-11-23T15:30:00Z" and bars["1h"]["symbol"] == "AAPL"
        assert (bars["1h"]["complete"], bars["1h"]["base_bars"]) == (False, 30)
        assert (bars["1d"]["ts"], bars["1d"]["complete"], bars["1d"]["base_bars"]) == (
            "2026-11-23T00:00:00Z",
            False,
            90,
        )
        assert bars["1h"]["type"] == "bar" and {
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "as_of",
        } <= set(bars["1h"])
        await ws.close()


async def test_live_messages_follow_subscriptions_and_unsubscribe(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL"], quotes=["MSFT"])
        await notify_bar(conn, "MSFT", 1)  # not subscribed (bars)
        await notify_bar(conn, "AAPL", 2, interval="5m")  # not subscribed (interval)
        await notify_bar(conn, "AAPL", 3)
        await notify_quote(conn, "MSFT", 4)
        assert (await recv(ws))["seq"] == 3
        assert (await recv(ws))["seq"] == 4
        await send(ws, {"action": "unsubscribe", "bars": ["AAPL"], "id": "u"})
        gone = await recv(ws)
        assert gone == {
            "type": "unsubscribed",
            "bars": ["AAPL"],
            "quotes": [],
            "intervals": ["1m"],
            "subscriptions": 1,
            "id": "u",
        }
        await notify_bar(conn, "AAPL", 5)
        await notify_quote(conn, "MSFT", 6)
        assert (await recv(ws))["seq"] == 6
        await send(ws, {"action": "unsubscribe", "all": True})
        assert (await recv(ws))["subscriptions"] == 0
        await notify_quote(conn, "MSFT", 7)
        with pytest.raises(TimeoutError):
            await recv(ws, within=0.3)
        await ws.close()


async def test_wildcards_match_every_symbol_or_a_prefix(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        ack, _ = await subscribe(ws, bars=["AA*", "msft"], quotes=["*"])
        assert ack["bars"] == ["AA*", "MSFT"] and ack["quotes"] == ["*"]
        for seq, sym in enumerate(["AAPL", "AMZN", "MSFT", "AAL"]):
            await notify_bar(conn, sym, seq)
        await notify_quote(conn, "VOD.L", 10)
        got = [(m["type"], m["symbol"]) for m in [await recv(ws) for _ in range(4)]]
        assert got == [("bar", "AAPL"), ("bar", "MSFT"), ("bar", "AAL"), ("quote", "VOD.L")]
        # a symbol matched twice (exact and pattern) arrives once
        await subscribe(ws, bars=["AAPL"])
        await notify_bar(conn, "AAPL", 20)
        await notify_quote(conn, "AAPL", 21)
        assert [(await recv(ws))["seq"], (await recv(ws))["seq"]] == [20, 21]
        await ws.close()


async def test_a_pattern_snapshot_expands_over_the_universe(conn) -> None:
    await _store_aapl(conn)
    async with live_server(WsLimits(max_snapshot_symbols=2)) as server:
        ws = await connect(server)
        _, snap = await subscribe(ws, bars=["A*"])
        assert [b["symbol"] for b in snap["bars"]] == ["AAPL"]
        assert snap["truncated"] is True  # more than 2 universe symbols start with A
        await ws.close()


MALFORMED = [
    ("{not json", "message"),
    ("[1, 2]", "message"),
    ('{"bars": ["AAPL"]}', "action"),
    ('{"action": "subcribe"}', "action"),
    ('{"action": "subscribe", "bars": ["AAPL"], "colour": 1}', "colour"),
    ('{"action": "subscribe", "bars": "AAPL"}', "bars"),
    ('{"action": "subscribe", "bars": ["AAPL", "no good"]}', "bars[1]"),
    ('{"action": "subscribe", "bars": ["AAPL", "*X"]}', "bars[1]"),
    ('{"action": "subscribe", "quotes": [42]}', "quotes[0]"),
    ('{"action": "subscribe", "bars": ["AAPL"], "intervals": ["60m"]}', "intervals[0]"),
    ('{"action": "subscribe", "bars": ["AAPL"], "intervals": []}', "intervals"),
    ('{"action": "subscribe", "bars": ["NOSUCH"]}', "bars[0]"),
    ('{"action": "subscribe", "quotes": ["AAPL", "NOSUCH"]}', "quotes[1]"),
    ('{"action": "subscribe"}', "bars"),
    ('{"action": "unsubscribe"}', "bars"),
    ('{"action": "ping", "id": {"a": 1}}', "id"),
]


async def test_malformed_frames_get_an_error_naming_the_field_and_the_connection_stays(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        for frame, field in MALFORMED:
            await ws.send(frame)
            err = await recv(ws)
            assert err["type"] == "error", frame
            assert err["parameter"] == field, (frame, err)
            assert err["detail"].startswith(field + ":"), (frame, err)
        await ws.send(b"\x00\x01")  # binary frames are refused the same way
        assert (await recv(ws))["parameter"] == "message"
        await send(ws, {"action": "ping", "id": "still-here"})
        pong = await recv(ws)
        assert pong["type"] == "pong" and pong["id"] == "still-here"
        # nothing was subscribed by any refused request
        assert server.hub.sessions and all(not s.bar_keys and not s.quote_keys for s in server.hub.sessions)
        await ws.close()


async def test_a_frame_over_the_size_limit_closes_with_1009(conn) -> None:
    async with live_server() as server:
        ws = await connect(server)
        await send(ws, {"action": "subscribe", "bars": ["AAPL"] * 1000})
        code, reason, _ = await close_of(ws)
        assert code == 1009 and "at most 4096 bytes" in reason


async def test_subscriptions_per_connection_are_limited(conn) -> None:
    async with live_server(WsLimits(max_subscriptions=3)) as server:
        ws = await connect(server)
        await subscribe(ws, bars=["AAPL", "MSFT"], quotes=["AAPL"], intervals=["1m", "5m"])  # 2 symbols
        await send(ws, {"action": "subscribe", "quotes": ["NVDA", "AMZN"], "id": 2})
        err = await recv(ws)
        assert err["code"] == "limit" and err["parameter"] == "quotes" and err["id"] == 2
        assert "at most 3" in err["detail"] and "would make 4" in err["detail"]
        ack, _ = await subscribe(ws, quotes=["NVDA"])  # the third still fits
        assert ack["subscriptions"] == 3
        await ws.close()


async def test_connections_per_client_address_are_limited(conn) -> None:
    async with live_server(WsLimits(max_connections_per_address=2)) as server:
        first, second = await connect(server), await connect(server)
        third = await connect(server)
        code, reason, _ = await close_of(third)
        assert code == 1008 and "too many connections from 127.0.0.1: at most 2" in reason
        await first.close()
        await asyncio.sleep(0.2)
        again = await connect(server)  # a slot is free again
        await send(again, {"action": "ping"})
        assert (await recv(again))["type"] == "pong"
        for ws in (second, again):
            await ws.close()


async def test_a_request_flood_is_rate_limited_then_closed(conn) -> None:
    limits = WsLimits(messages_per_second=1, message_burst=3, max_refused_messages=5)
    async with live_server(limits) as server:
        ws = await connect(server)
        for i in range(3):
            await send(ws, {"action": "ping", "id": i})
        assert [(await recv(ws))["type"] for _ in range(3)] == ["pong"] * 3
        await send(ws, {"action": "subscribe", "bars": ["AAPL"]})
        err = await recv(ws)
        assert err["code"] == "rate_limited" and "at most 1/s" in err["detail"]
        for _ in range(10):
            with contextlib.suppress(websockets.ConnectionClosed):
                await send(ws, {"action": "subscribe", "bars": ["AAPL"]})
        code, reason, _ = await close_of(ws)
        assert code == 1008 and "too many messages" in reason


async def test_ping_and_heartbeats(conn) -> None:
    async with live_server(WsLimits(heartbeat_seconds=0.2, watchdog_seconds=0.05)) as server:
        ws = await connect(server)
        beat = await recv_until(ws, "heartbeat", within=3)
        assert beat["dropped"] == 0 and beat["ts"] > 0
        await ws.close()


async def test_symbol_socket_sends_snapshot_then_that_symbols_updates(conn) -> None:
    await _store_aapl(conn)
    async with live_server() as server:
        ws = await connect(server, "/ws/aapl?intervals=1m,5m")
        ack = await recv(ws)
        assert ack["bars"] == ["AAPL"] and ack["quotes"] == ["AAPL"] and ack["intervals"] == ["1m", "5m"]
        snap = await recv(ws)
        assert len(snap["bars"]) == 2 and len(snap["quotes"]) == 1
        await notify_bar(conn, "MSFT", 1)
        await notify_bar(conn, "AAPL", 2, interval="5m")
        await notify_quote(conn, "AAPL", 3)
        assert [(await recv(ws))["seq"], (await recv(ws))["seq"]] == [2, 3]
        await ws.close()


@pytest.mark.parametrize(
    ("path", "code", "parameter"),
    [
        ("/ws/NOSUCH", 4404, "symbol"),
        ("/ws/no%20good", 4400, "symbol"),
        ("/ws/AAPL?intervals=1m,60m", 4400, "intervals"),
    ],
)
async def test_symbol_socket_refuses_bad_paths_with_a_reason(
    conn, path: str, code: int, parameter: str
) -> None:
    async with live_server() as server:
        ws = await connect(server, path)
        err = await recv(ws)
        assert err["type"] == "error" and err["parameter"] == parameter
        got, reason, _ = await close_of(ws)
        assert got == code and reason.startswith(parameter + ":")


def test_request_decoding_names_fields() -> None:
    assert normalize_patterns(["aapl", "AAPL", "brk.*", "*"], "bars") == ["AAPL", "BRK.*", "*"]
    problem = decode_request(json.dumps({"action": "subscribe", "bars": ["A"] * 600}))
    assert not isinstance(problem, dict) and getattr(problem, "parameter", None) == "bars"


async def test_service_info_lists_the_websocket_paths(client) -> None:
    body = (await client.get("/")).json()
    assert body["websockets"] == ["/ws", "/ws/{symbol}"]
