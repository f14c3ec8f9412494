"""`python -m producer serve`: the HTTP gateway and its try-it page.

POST /v1/{algorithm} takes audio as the request body (Content-Type audio/* or
application/octet-stream) or as the `audio` field of a multipart upload; options come as
query parameters or form fields (JSON literals are decoded: `?threshold=0.6` is a number).
The call goes through producer.Client, so timeouts, limits and errors are the library's;
errors answer {"error": {"type", "message"}} with the status from producer.servers.wire, every
one of them: framework errors, bugs (500) and requests too malformed to parse as HTTP too.

The body is counted while it arrives (producer.servers.forms) and refused at the first byte past
the limit, in memory, never spooled to disk; the API key, the algorithm and the options in
the query are checked before any of it is read, and an answer sent before the whole body
came closes the connection instead of reading the rest. Options are typed before use
(producer.algorithms.options): a wrong one is a 400 naming it, before anything is published.

The Client blocks while it waits, so calls run in a thread pool: one slow call never
holds up the event loop, and each pool thread has its own reply queue in the Client.
GET /v1/algorithms answers every algorithm's declaration from the catalog (built-ins and
installed plugins), and the OpenAPI document has a path per operation
(producer.servers.gateway.openapi): the page and the document follow the catalog, no file edited.
Imported only by the `serve` subcommand: `import producer` must not pull in FastAPI.
"""

import argparse
import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import producer.servers.gateway.openapi as openapi
from producer.algorithms.options import check_timeout, clips_for, fields_for, parse_options
from producer.client.core import Client
from producer.errors import CallTimeout, InvalidAudio, InvalidInput, SpeechError
from producer.servers import wire
from producer.servers.forms import MULTIPART_SLACK, BodyCounter, FormReader, UploadBudget, too_large
from producer.servers.jobs import routes as recordings
from producer.settings import settings

STATIC = Path(__file__).with_name("static")
RAW_TYPES = {"", "application/octet-stream"}
# A request's whole header block, however it arrives (h11 bounds only a block still
# incomplete, so one sent in a single write could be of any size): bytes and lines.
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
# Statuses whose answers say when to come back (Retry-After).
RETRY_LATER = (429, 503, 507)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": example}}}
    for code, text, example in [
        (400, "bad input or options", {"error": {"type": "InvalidOptions", "message": "..."}}),
        (401, "missing or wrong X-API-Key", {"error": {"type": "Unauthorized", "message": ""}}),
        (404, "unknown algorithm", {"error": {"type": "UnknownAlgorithm", "message": "..."}}),
        (413, "audio above the payload limit", {"error": {"type": "PayloadTooLarge"}}),
        (429, "this caller holds its share (see Retry-After)", {"error": {"type": "..."}}),
        (415, "not audio, or audio that cannot be decoded", {"error": {"type": "InvalidAudio"}}),
        (502, "the algorithm failed on the worker", {"error": {"type": "RemoteError"}}),
        (503, "broker unreachable or overloaded (see Retry-After)", {"error": {"type": "..."}}),
        (504, "no answer within the timeout", {"error": {"type": "CallTimeout"}}),
    ]
}


def create_app(
    client: Client,
    *,
    threads: int = settings().gateway_threads,
    api_key: str = settings().api_key,
    retry_after: int = settings().retry_after,
    health_timeout: float = settings().health_timeout,
    upload_budget: int = settings().gateway_upload_budget,
    client_upload_share: int = settings().gateway_client_uploads,
) -> FastAPI:
    calls = ThreadPoolExecutor(max(1, threads), thread_name_prefix="gateway-call")
    # Health pings get their own threads: a gateway busy with long calls still answers them.
    pings = ThreadPoolExecutor(len(client.algorithms), thread_name_prefix="gateway-ping")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        calls.shutdown(wait=False, cancel_futures=True)
        pings.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Speech platform gateway",
        version="1",
        summary="Run the platform's speech algorithms over HTTP.",
        lifespan=lifespan,
    )
    uploads = UploadBudget(upload_budget, client_upload_share)
    app.add_middleware(_HeaderLimits)
    app.add_middleware(_CloseUnreadBodies)  # outermost: also closes after a 431
    authorized = Depends(_key_check(api_key))
    caller = _caller(api_key)

    @app.exception_handler(SpeechError)
    async def speech_error(_: Request, exc: SpeechError) -> JSONResponse:
        status = wire.http_status(exc)
        headers = {}
        if status in RETRY_LATER:
            headers["Retry-After"] = str(getattr(exc, "retry_after", None) or retry_after)
        return JSONResponse({"error": wire.error_body(exc)}, status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (bad multipart, unknown path, wrong method) in the same shape.
        body = {"error": {"type": "HTTPError", "message": str(exc.detail)}}
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(_: Request, __: ClientDisconnect) -> JSONResponse:
        message = "the client went away before sending the whole request"
        return JSONResponse({"error": {"type": "InvalidInput", "message": message}}, 400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug of ours: the same JSON shape as every other error (the traceback is logged).
        return JSONResponse({"error": wire.error_body(exc)}, 500)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        message = "missing or wrong X-API-Key header"
        return JSONResponse({"error": {"type": "Unauthorized", "message": message}}, 401)

    names = wire.operations(client)
    declared = client.catalog
    listing = {
        "algorithms": list(client.algorithms),
        "operations": names,
        "declarations": declared.describe(),
    }

    @app.get("/v1/algorithms", dependencies=[authorized])
    async def algorithms() -> dict[str, Any]:
        """The algorithm queues, the operations POST /v1/{algorithm} accepts, and each
        algorithm's declaration: summary, source, resources, and per operation its help,
        clips and options (kind, default, range or choices, help)."""
        return listing

    @app.get("/v1/health", dependencies=[authorized], responses={503: {"description": "down"}})
    async def health() -> JSONResponse:
        """Ping every algorithm queue: is a worker answering, and how fast."""
        loop = asyncio.get_running_loop()
        names = list(client.algorithms)
        probes = [loop.run_in_executor(pings, _probe, client, q, health_timeout) for q in names]
        queues = dict(zip(names, await asyncio.gather(*probes), strict=True))
        alive = sum(q["alive"] for q in queues.values())
        status = "ok" if alive == len(queues) else "degraded" if alive else "down"
        return JSONResponse({"status": status, "queues": queues}, 200 if status == "ok" else 503)

    # /v1/transcribe and /v1/jobs (producer/servers/jobs/routes.py), before /v1/{algorithm}
    recordings.install(
        app, client, calls=calls, authorized=authorized, uploads=uploads, caller=caller
    )

    @app.post(
        "/v1/{algorithm}",
        dependencies=[authorized],
        responses=ERROR_RESPONSES,
    )
    async def run(algorithm: str, request: Request) -> JSONResponse:
        """Run `algorithm` on the audio and answer its result (documented per operation
        by producer.servers.gateway.openapi)."""
        if algorithm not in names:
            known = ", ".join(names)
            message = f"unknown algorithm {algorithm[:60]!r}; known: {known}"
            return JSONResponse({"error": {"type": "UnknownAlgorithm", "message": message}}, 404)
        started = time.monotonic()
        with uploads.lease(caller(request)) as take:  # counted until the answer is sent
            clips, options = await _read_request(request, algorithm, client.max_payload_bytes, take)
            return await _answer(calls, client, algorithm, clips, options, started)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    openapi.install(app, declared, names)  # POST /v1/<operation> for each one, typed
    return app


async def _answer(
    calls: ThreadPoolExecutor,
    client: Client,
    algorithm: str,
    clips: list[bytes],
    options: dict[str, Any],
    started: float,
) -> JSONResponse:
    """Run the call on a pool thread and answer its result as JSON."""
    # `timeout` steers the call; every other option goes to the algorithm.
    timeout = _timeout(options.pop("timeout", None), client.timeout)
    deadline = started + timeout

    def call() -> dict[str, Any]:
        # Time spent waiting for a free thread counts against the caller's timeout.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CallTimeout(f"no gateway thread became free within {timeout:g} s")
        result = wire.invoke(client, algorithm, clips, remaining, options)
        return wire.plain(result, binary=False)  # base64 work off the event loop

    result = await asyncio.get_running_loop().run_in_executor(calls, call)
    seconds = round(time.monotonic() - started, 4)
    body = {"algorithm": algorithm, "result": result}
    return JSONResponse({**body, "seconds": seconds})


class _CloseUnreadBodies:
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


class _HeaderLimits:
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


def _caller(api_key: str) -> Callable[[Request], str]:
    """Who a request counts against: its API key when the gateway has keys (hashed: keys
    never sit in memory twice), else the client's address."""

    def caller(request: Request) -> str:
        if api_key:
            key = request.headers.get("x-api-key", "").encode()
            return "key:" + hashlib.sha256(key).hexdigest()[:16]
        return "address:" + (request.client.host if request.client else "")

    return caller


def _key_check(api_key: str) -> Callable[..., None]:
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    def check(key: str | None = Depends(header)) -> None:
        if api_key and not hmac.compare_digest((key or "").encode(), api_key.encode()):
            raise _Unauthorized()

    return check


class _Unauthorized(Exception):
    pass


def _probe(client: Client, queue: str, timeout: float) -> dict[str, Any]:
    try:
        answer = client.ping(queue, timeout=timeout)
    except SpeechError as exc:
        return {"alive": False, "error": wire.error_body(exc)}
    return {"alive": True, "worker": answer["worker"], "rtt_ms": round(answer["rtt"] * 1000, 1)}


async def _read_request(
    request: Request, operation: str, max_bytes: int, take: Callable[[int], None]
) -> tuple[list[bytes], dict[str, Any]]:
    """The clips and the typed options of a request; the body is counted as it arrives and
    refused at the first byte past the limit (or before any, given a Content-Length)."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    length = request.headers.get("content-length", "")
    if (
        length.isascii()
        and length.isdigit()
        and int(length) > max_bytes + (MULTIPART_SLACK if multipart else 0)
    ):
        raise too_large(int(length), max_bytes)
    reader: FormReader | BodyCounter
    if multipart:
        reader = FormReader(
            ctype, max_bytes, clips=clips_for(operation), fields=fields_for(operation)
        )
    elif kind in RAW_TYPES or kind.startswith("audio/"):
        reader = BodyCounter(max_bytes)
    else:
        raise InvalidAudio(
            f"Content-Type {kind[:60]!r} is not audio: send the audio as the body (audio/* or"
            " application/octet-stream) or as the 'audio' field of a multipart/form-data upload"
            + (
                " (curl --data-binary needs -H 'Content-Type: audio/wav')"
                if "urlencoded" in kind
                else ""
            )
        )
    # Options in the query are checked before the body is read: a bad one costs no upload.
    query = request.query_params.multi_items()
    parse_options(operation, query)
    async for chunk in request.stream():
        take(len(chunk))  # Overloaded when all uploads together pass the gateway's budget
        reader.feed(chunk)
    upload = reader.finish()
    options = parse_options(operation, query + upload.fields)
    wanted = clips_for(operation)
    if len(upload.clips) != wanted:
        raise InvalidInput(f"{operation} takes {wanted} clip(s), got {len(upload.clips)}")
    return upload.clips, options


def _timeout(value: Any, default: float) -> float:
    return default if value is None else check_timeout(value)


def serve(client: Client, args: argparse.Namespace) -> int:
    import uvicorn

    from producer.servers.gateway.http11 import GatewayProtocol

    app = create_app(client)
    app.state.jobs.start()  # this process runs jobs from the store (producer.servers.jobs.runner)
    host = args.host or settings().gateway_host
    port = settings().gateway_port if args.port is None else args.port
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=GatewayProtocol,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    app.state.jobs.stop()
    return 0
