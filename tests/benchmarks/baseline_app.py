"""The floor of `bench_api`: a bare Starlette + asyncpg app serving /price and /history.

    uvicorn --factory tests.benchmarks.baseline_app:create_app   (DATABASE_URL from the environment)

It runs exactly the SQL of the real handlers in steady state, through the same query
functions (`api.stocks.queries` and `market_data.bar_fetch`, so the statements cannot drift)
on a pool opened with the API's own options (`api.state.POOL_OPTIONS`): `/stocks/{symbol}/price`
is `latest_quote` + `latest_bars`, `/stocks/{symbol}/history` with its default parameters (the
latest 1,000 1m bars before now, oldest first; 1m is stored, so read as stored) is
`bar_fetch.stored_page` newest first for `limit + 1` bars. The symbol's exchange comes from
`exchanges_of`, remembered for 60 s as the API does (the API also remembers the symbol's
stored intervals and the policy: no query in steady state), the market-open flag from the
same calendar function. The bars become the same JSON bodies (same fields in the same order,
encoded by msgspec as Litestar does; bench_api checks the bodies are equal), so what the API
spends beyond this app is its framework: routing, dependency injection, parameter parsing
and validation, middleware (latency histogram, Accept guard, CORS), response building. Not
here: OpenAPI, page tokens (the benchmark's data fits in one page), CSV negotiation, error
bodies beyond a status and a detail.

`WS /ws` is the floor of a WebSocket subscription's snapshot: `subscribe` to tickers' bars and
quotes (no patterns, 1m only) is answered with `subscribed` and a `snapshot` read by the SQL
the API runs when its latest-value cache cannot answer (`api.ws.snapshot.LATEST_BARS` and
`api.stocks.latest.LATEST_QUOTES`), the symbols checked against the universe as for /price
(remembered 60 s, as the API's symbol directory does); `unsubscribe` is acknowledged. No
limits, no fan-out.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.state import POOL_OPTIONS
from api.stocks import queries
from api.stocks.latest import LATEST_QUOTES
from api.stocks.params import EARLIEST
from api.stocks.schemas import bars_out
from api.ws.snapshot import LATEST_BARS
from market_data import bar_fetch, calendar
from market_data.records import Interval, is_valid_symbol

KNOWN_TTL_SECONDS = 60.0
HISTORY_LIMIT = 1000
"""The API's default `limit` of /history."""

encode = msgspec.json.Encoder().encode
Body = tuple[int, dict[str, Any]]
"""(HTTP status, JSON body)"""


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.body: Body = (status, {"status_code": status, "detail": detail})


class Floor:
    """The work of the two endpoints with nothing around it: queries, the body, no framework."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._known: dict[str, tuple[str, float]] = {}

    async def _exchange_of(self, symbol: str) -> str | None:
        hit = self._known.get(symbol)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        for row in await queries.exchanges_of(self.pool, [symbol]):
            self._known[row["symbol"]] = (row["exchange_mic"], now + KNOWN_TTL_SECONDS)
        hit = self._known.get(symbol)
        return hit[0] if hit is not None else None

    async def _symbol(self, raw: str) -> tuple[str, str]:
        """(symbol, exchange MIC).

        Raises:
            Refused: not a ticker (400), not in the universe (404).
        """
        symbol = raw.strip().upper()
        if not is_valid_symbol(symbol):
            raise Refused(400, "symbol: not a ticker")
        mic = await self._exchange_of(symbol)
        if mic is None:
            raise Refused(404, f"symbol: {symbol} is not in the universe")
        return symbol, mic

    async def price(self, raw_symbol: str) -> Body:
        try:
            symbol, mic = await self._symbol(raw_symbol)
        except Refused as refused:
            return refused.body
        quote = await queries.latest_quote(self.pool, symbol)
        market_open = calendar.is_open_at(mic, datetime.now(UTC))
        best: dict[str, Any] | None = None
        if quote is not None:
            best = {
                "symbol": symbol,
                "price": quote["last"],
                "ts": quote["ts"],
                "provider": quote["provider"],
                "source": "quote",
                "bid": quote["bid"],
                "ask": quote["ask"],
                "exchange_mic": mic,
                "market_open": market_open,
            }
        for bar in await queries.latest_bars(self.pool, symbol):
            interval = Interval(bar["interval"])
            ended = bar["ts"] + interval.delta if interval.is_intraday else bar["ts"]
            if best is None or ended > best["ts"]:
                best = {
                    "symbol": symbol,
                    "price": bar["close"],
                    "ts": ended,
                    "provider": bar["provider"],
                    "source": f"bar:{interval.value}",
                    "bid": None,
                    "ask": None,
                    "exchange_mic": mic,
                    "market_open": market_open,
                }
        if best is None:
            return 404, {"status_code": 404, "detail": f"symbol: no price stored for {symbol} yet"}
        return 200, best

    async def history(self, raw_symbol: str) -> Body:
        try:
            symbol, _ = await self._symbol(raw_symbol)
        except Refused as refused:
            return refused.body
        now = datetime.now(UTC)
        page = await bar_fetch.stored_page(
            self.pool, symbol, Interval.M1, EARLIEST, now, now, HISTORY_LIMIT + 1, newest_first=True
        )
        # a next page would need a token; the benchmark's data fits one page
        bars = bars_out(page.take(slice(0, HISTORY_LIMIT)).reversed())
        return 200, {
            "symbol": symbol,
            "interval": "1m",
            "built_from": None,
            "align": None,
            "sort": "asc",
            "count": len(bars),
            "bars": bars,
            "as_of": now,
            "next_page_token": None,
            "adjustment": None,  # raw bars (the API's default `adjustment=raw`)
        }

    async def snapshot(self, tickers: list[str]) -> dict[str, Any]:
        """The `snapshot` message of a subscription to `tickers`' 1m bars and quotes."""
        known = [s for s in tickers if await self._exchange_of(s) is not None]
        async with self.pool.acquire() as conn:
            bars = await conn.fetch(LATEST_BARS, known, ["1m"])
            quotes = await conn.fetch(LATEST_QUOTES, known)
        return {
            "type": "snapshot",
            "bars": [msgspec.Raw(r["j"].encode()) for r in bars],
            "quotes": [msgspec.Raw(r["j"].encode()) for r in quotes],
            "truncated": False,
        }


def _response(body: Body) -> Response:
    return Response(encode(body[1]), status_code=body[0], media_type="application/json")


def create_app(pool: asyncpg.Pool | None = None) -> Starlette:
    """The Starlette app; it opens its own pool from DATABASE_URL unless given one."""
    floor: Floor | None = Floor(pool) if pool is not None else None

    async def price(request: Request) -> Response:
        assert floor is not None
        return _response(await floor.price(request.path_params["symbol"]))

    async def history(request: Request) -> Response:
        assert floor is not None
        return _response(await floor.history(request.path_params["symbol"]))

    async def ws(socket: WebSocket) -> None:
        assert floor is not None
        await socket.accept()
        followed: set[str] = set()
        try:
            while True:
                request = msgspec.json.decode(await socket.receive_text())
                tickers = list(dict.fromkeys(request.get("bars", []) + request.get("quotes", [])))
                reply = {
                    "id": request.get("id"),
                    "bars": request.get("bars", []),
                    "quotes": request.get("quotes", []),
                }
                action = request.get("action")
                if action == "subscribe":
                    followed |= set(tickers)
                else:
                    followed -= set(tickers)
                ack = {
                    "type": "subscribed" if action == "subscribe" else "unsubscribed",
                    **reply,
                    "intervals": ["1m"],
                    "subscriptions": len(followed),
                }
                await socket.send_text(encode(ack).decode())
                if action == "subscribe":
                    snapshot = {**await floor.snapshot(tickers), "id": request.get("id")}
                    await socket.send_text(encode(snapshot).decode())
        except WebSocketDisconnect:
            pass

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal floor
        if floor is not None:
            yield
            return
        own = await asyncpg.create_pool(os.environ["DATABASE_URL"], **POOL_OPTIONS)
        floor = Floor(own)
        try:
            yield
        finally:
            await own.close()

    return Starlette(
        routes=[
            Route("/stocks/{symbol}/price", price),
            Route("/stocks/{symbol}/history", history),
            WebSocketRoute("/ws", ws),
        ],
        lifespan=lifespan,
    )
