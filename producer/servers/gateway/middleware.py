"""The gateway's ASGI middleware: bounds on a request's header block, and an answer sent
before the body was read in full closes the connection."""

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A request's whole header block, however it arrives (h11 bounds only a block still
# incomplete, so one sent in a single write could be of any size): bytes and lines.
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100


class CloseUnreadBodies:
    """An answer sent before the request body was read in full closes the connection.

    Otherwise the server would go on reading, and dropping, whatever the caller still sends
    (all of a 1 GiB upload refused with 413 or 401) before the connection could serve again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        unread = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"

        async def receive_counted() -> Message:
            nonlocal unread
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                unread = False
            return message

        async def send_maybe_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                closing = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": closing}
            await send(message)

        await self.app(scope, receive_counted, send_maybe_closing)


class HeaderLimits:
    """A request whose header block passes MAX_HEADER_BYTES or MAX_HEADERS is answered 431."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers") or []
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if scope["type"] != "http" or (size <= MAX_HEADER_BYTES and len(headers) <= MAX_HEADERS):
            await self.app(scope, receive, send)
            return
        message = (
            f"the request has {len(headers)} headers of {size} bytes in all; the maximum is"
            f" {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes"
        )
        body = {"error": {"type": "HTTPError", "message": message}}
        await JSONResponse(body, 431)(scope, receive, send)
