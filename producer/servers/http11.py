"""The gateway's HTTP/1.1 connections: uvicorn's h11 protocol with two changes.

- Requests it cannot parse (a request line or headers over 16 KiB, a header without a
  colon, two different Content-Lengths, a bad chunk size) are answered in JSON too.
- A connection closed while the caller may still be sending (an answer given before the
  body was read: 401, 413, 400 for options in the query, a malformed request) is closed
  the way nginx closes it, "lingering": the answer, then a FIN, then whatever still
  arrives is read and dropped until the caller closes its side, for LINGER_SECONDS at
  most. Closing at once would make the kernel answer the unread bytes with a reset, which
  destroys the answer in the caller's receive buffer before it can read it.

Imported only by the gateway's `serve`: h11 and uvicorn are server dependencies.
"""

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# How long a closing connection keeps draining what the caller still sends, and how many
# bytes it drops at most meanwhile, before it closes for good: enough for the rest of an
# ordinary request, not enough to let a refused upload go on (that one is cut, and a
# caller that reads while it sends, as HTTP clients do, has the answer already).
LINGER_SECONDS = 3.0
LINGER_BYTES = 1024 * 1024


class _LingeringTransport:
    """A TCP transport whose close() half-closes and drains first (see the module)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self.lingering = False
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self.lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()  # sent after the answer: the caller reads it, then EOF
        self._transport.resume_reading()
        self._loop.call_later(LINGER_SECONDS, self.abort_lingering)

    def drop(self, data: bytes) -> None:
        self.dropped += len(data)
        if self.dropped > LINGER_BYTES:
            self.abort_lingering()

    def abort_lingering(self) -> None:
        self._transport.close()


class GatewayProtocol(H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with JSON answers to malformed requests and lingering close."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self.loop))

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.drop(data)
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self.transport.lingering:  # the caller closed its side: nothing more to drain
            self.transport.abort_lingering()

    def send_400_response(self, msg: str) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            # An answer was sent already (a 401 before a broken chunk): just close.
            self.transport.close()
            return
        error = {"type": "HTTPError", "message": f"malformed HTTP request: {msg}"}
        body = json.dumps({"error": error}).encode()
        head = (
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
