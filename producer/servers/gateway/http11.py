"""The gateway's HTTP/1.1 connections: uvicorn's h11 protocol with four changes.

- Requests it cannot parse (a request line or headers over 16 KiB, a header without a
  colon, two different Content-Lengths, a bad chunk size) are answered in JSON too.
- A connection closed while the caller may still be sending (an answer given before the
  body was read: 401, 413, 400 for options in the query, a malformed request) is closed
  the way nginx closes it, "lingering": the answer, then a FIN, then whatever still
  arrives is read and dropped until the caller closes its side, for LINGER_SECONDS at
  most. Closing at once would make the kernel answer the unread bytes with a reset, which
  destroys the answer in the caller's receive buffer before it can read it.
- Slow or stalled callers cannot hold a connection: a header block must arrive within
  SPEECH_GATEWAY_HEADER_TIMEOUT (else 408 and close); a body within
  SPEECH_GATEWAY_BODY_TIMEOUT, sending at least SPEECH_GATEWAY_MIN_RATE bytes/s over every
  window of SPEECH_GATEWAY_RATE_WINDOW seconds (else the connection closes, and the
  request's handler sees the caller gone). Time the gateway spends answering is not
  counted: the clocks run only while the caller owes bytes.
- One client address holds at most SPEECH_GATEWAY_CLIENT_CONNECTIONS connections; the
  next ones are answered 429 and closed at once.

Imported only by the gateway's `serve`: h11 and uvicorn are server dependencies.
"""

import asyncio
import json
import time
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from producer.settings import settings

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
    """uvicorn's h11 protocol with JSON answers to malformed requests, lingering close,
    deadlines on what the caller sends, and a cap on connections per client address."""

    header_timeout = settings().gateway_header_timeout
    body_timeout = settings().gateway_body_timeout
    min_rate = settings().gateway_min_rate
    rate_window = settings().gateway_rate_window
    client_connections = settings().gateway_client_connections
    open_per_client: Counter[str] = Counter()  # one event loop: no lock

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self.loop))
        self._address = self.client[0] if self.client else ""
        self._phase, self._since, self._window_bytes = "head", time.monotonic(), 0
        self._timer: asyncio.TimerHandle | None = None
        if self.open_per_client[self._address] >= self.client_connections:
            self._address = ""  # not counted: it never held a slot
            message = (
                f"this client holds {self.client_connections} connections already"
                " (SPEECH_GATEWAY_CLIENT_CONNECTIONS): reuse them or retry later"
            )
            self._refuse(429, "Too Many Requests", "TooManyRequests", message)
            return
        self.open_per_client[self._address] += 1
        self._tick(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._address:
            self.open_per_client[self._address] -= 1
            if self.open_per_client[self._address] <= 0:
                del self.open_per_client[self._address]
            self._address = ""
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.drop(data)
            return
        self._window_bytes += len(data)
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._phase == "head":
            self._phase, self._since, self._window_bytes = "body", time.monotonic(), 0
            self._tick(min(self.rate_window, self.body_timeout))
        elif state is not h11.SEND_BODY and state is not h11.IDLE:
            self._phase = ""  # the request is in: the gateway's own time is not the caller's

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # keep-alive: the next request's head is due
            self._phase, self._since = "head", time.monotonic()
            self._tick(self.header_timeout)

    def _tick(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(max(0.05, delay), self._check)

    def _check(self) -> None:
        """Enforce the deadline of the phase the caller is in (see the module)."""
        self._timer = None
        if self.transport.is_closing() or not self._phase:
            return
        elapsed = time.monotonic() - self._since
        if self._phase == "head":
            if elapsed < self.header_timeout:
                self._tick(self.header_timeout - elapsed)
                return
            message = f"the request's headers took over {self.header_timeout:g} s"
            self._refuse(408, "Request Timeout", "RequestTimeout", message)
        elif elapsed >= self.body_timeout or self._window_bytes < self.min_rate * self.rate_window:
            self._cut_body(elapsed)
        else:
            self._window_bytes = 0
            self._tick(min(self.rate_window, self.body_timeout - elapsed))

    def _cut_body(self, elapsed: float) -> None:
        message = (
            f"the request body came too slowly (after {elapsed:.0f} s: under"
            f" {self.min_rate} bytes/s for {self.rate_window:g} s, or over"
            f" {self.body_timeout:g} s in all)"
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._refuse(408, "Request Timeout", "RequestTimeout", message)
        else:
            self.transport.close()
        if cycle is not None:  # the handler sees the caller gone, and gives back its upload
            cycle.disconnected = True
            cycle.message_event.set()

    def _refuse(self, status: int, reason: str, kind: str, message: str) -> None:
        """Answer `status` with the JSON error, outside h11's bookkeeping, and close."""
        body = json.dumps({"error": {"type": kind, "message": message}}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()

    def eof_received(self) -> None:
        if self.transport.lingering:  # the caller closed its side: nothing more to drain
            self.transport.abort_lingering()

    def send_400_response(self, msg: str) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            # An answer was sent already (a 401 before a broken chunk): just close.
            self.transport.close()
            return
        self._refuse(400, "Bad Request", "HTTPError", f"malformed HTTP request: {msg}")
