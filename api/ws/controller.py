"""WS /ws (multiplexed subscriptions) and WS /ws/{symbol} (one symbol, the predecessor's socket)."""

from __future__ import annotations

from litestar import WebSocket, websocket
from litestar.params import FromPath

from api.ws.hub import Hub
from api.ws.protocol import (
    TICKER_RULE,
    Problem,
    Subscribe,
    close_code_for,
    error_text,
    normalize_symbol,
)
from api.ws.session import Session
from market_data.timeframes import TimeframeError, parse_timeframe


def live_hub(socket: WebSocket) -> Hub:
    hub: Hub = socket.app.state.ws_hub
    return hub


async def _serve(socket: WebSocket, initial: Subscribe | None = None, problem: Problem | None = None) -> None:
    hub = live_hub(socket)
    await socket.accept()
    session = Session(hub, socket, socket.client.host if socket.client else "unknown")
    refused = hub.admit(session)
    if refused is not None:
        await socket.close(*refused)
        return
    if problem is not None:  # a bad /ws/{symbol} path: say why, then close
        session.reply(error_text(problem))
        session.request_close(close_code_for(problem), problem.detail)
    await session.run(initial, fail_parameter="symbol" if initial is not None else None)


@websocket("/ws", name="ws_multiplex")
async def ws_multiplex(socket: WebSocket) -> None:
    """Subscribe and unsubscribe to bars and quotes of many symbols (see api.ws.protocol)."""
    await _serve(socket)


def _symbol_request(symbol: str, intervals_raw: str | None) -> Subscribe | Problem:
    sym = normalize_symbol(symbol)
    if sym is None:
        return Problem(
            "symbol",
            f"symbol: {symbol[:20]!r} is not a ticker ({TICKER_RULE})",
        )
    intervals: list[str] = []
    for part in (intervals_raw or "1m").split(","):
        try:
            intervals.append(parse_timeframe(part.strip()).value)
        except TimeframeError as exc:
            return Problem("intervals", f"intervals: {exc}")
    return Subscribe(bars=[sym], quotes=[sym], intervals=intervals)


@websocket("/ws/{symbol:str}", name="ws_symbol")
async def ws_symbol(socket: WebSocket, symbol: FromPath[str]) -> None:
    """Bars (`?intervals=1m,5m`, default 1m) and quotes of one symbol: snapshot, then live updates."""
    request = _symbol_request(symbol, socket.query_params.get("intervals"))
    if isinstance(request, Problem):
        await _serve(socket, problem=request)
    else:
        await _serve(socket, initial=request)
