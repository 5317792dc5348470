"""The HTTP/1.1 protocol `python -m api.serve` runs: uvicorn's httptools protocol, with what one
turn of the event loop writes to a connection sent at once.

uvicorn writes a response's head (status line and headers) and its body with two
`transport.write` calls, and uvloop sends each at once: two TCP segments, two wake-ups of the
client and two reads on its side for a 200-byte `/price` answer. Here the writes of one loop turn
are joined and sent when the turn ends (a head and the body that follows it leave in one
segment), or at once when they reach `SEND_AT` bytes, so a large or streamed body is not held
back and flow control still sees every byte. aiohttp does the same for small responses
(aio-libs/aiohttp#10991). Measured with `./dev bench api_procs` on this 2-core machine: two API
processes served 8.3k `/price` requests/s with two writes and 10.0k with one (one process:
5.8k and 5.9k), because the client and the processes share the cores and every segment costs
both sides a wake-up.

A WebSocket upgrade hands the connection's own transport to the WebSocket protocol: frames are
written as they come, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SEND_AT = 64 * 1024
"""Held bytes that are sent at once rather than at the end of the loop turn."""


class CombinedWrites:
    """A transport that sends what one loop turn writes to it as one write of the real one.

    Everything but `write`, `writelines`, `close`, `write_eof`, `abort` and
    `get_write_buffer_size` goes to the real transport. Held bytes are sent before the
    connection is closed or half-closed, dropped by `abort` (as the real transport drops its
    buffer), and dropped when the real transport is already closing (they could not be sent).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= SEND_AT:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_of_turn)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Send what is held now (one write)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def _end_of_turn(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self._held_bytes

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._held_bytes = 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneSendHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through `CombinedWrites` (one send per response)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CombinedWrites(transport, self.loop))  # type: ignore[arg-type]

    def handle_websocket_upgrade(self) -> None:
        combined = self.transport
        if isinstance(combined, CombinedWrites):
            combined.flush()
            self.transport = combined.transport
        super().handle_websocket_upgrade()
