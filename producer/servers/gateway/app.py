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

With SPEECH_GATEWAY_TLS_CERT and SPEECH_GATEWAY_TLS_KEY the gateway serves HTTPS (uvicorn's
TLS), so audio and API keys are never in clear without a proxy in front.

This module assembles the app: the routers (producer.servers.gateway.routes,
producer.servers.jobs.routes), the error handlers, the middleware that bounds headers and
closes unread bodies, and the try-it page. Imported only by the `serve` subcommand:
`import producer` must not pull in FastAPI.
"""

import argparse
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import producer.servers.gateway.openapi as openapi
import producer.servers.gateway.routes as routes
import producer.servers.jobs.routes as jobs
from producer.algorithms.learnt import registry_for
from producer.client.core import Client
from producer.client.learning import Learner
from producer.errors import InvalidInput, SpeechError
from producer.servers import wire
from producer.servers.door import Door, Unauthorized, door
from producer.servers.forms import UploadBudget
from producer.servers.gateway.accounting import Accounting, Ledger
from producer.servers.gateway.middleware import CloseUnreadBodies, HeaderLimits
from producer.servers.keys import Keys, RateLimit, parse_keys
from producer.settings import settings
from producer.tls import gateway_files

log = logging.getLogger("speech.gateway")

STATIC = Path(__file__).with_name("static")
# Statuses whose answers say when to come back (Retry-After).
RETRY_LATER = (429, 503, 507)
# Health pings in parallel beyond one per local algorithm: for those learnt from workers
# (threads are made only when used).
LEARNT_PINGS = 8


def create_app(
    client: Client,
    *,
    threads: int = settings().gateway_threads,
    api_key: str = settings().api_key,
    api_keys: str = settings().api_keys,
    rate_limit: float = settings().rate_limit,
    rate_burst: int = settings().rate_burst,
    retry_after: int = settings().retry_after,
    health_timeout: float = settings().health_timeout,
    upload_budget: int = settings().gateway_upload_budget,
    client_upload_share: int = settings().gateway_client_uploads,
    access_log: bool = False,
) -> FastAPI:
    state = Door(
        client,
        calls=ThreadPoolExecutor(max(1, threads), thread_name_prefix="gateway-call"),
        pings=ThreadPoolExecutor(
            len(client.algorithms) + LEARNT_PINGS, thread_name_prefix="gateway-ping"
        ),
        uploads=UploadBudget(upload_budget, client_upload_share),
        keys=Keys(parse_keys(api_key, api_keys)),
        rate_limit=RateLimit(rate_limit, rate_burst) if rate_limit > 0 else None,
        retry_after=retry_after,
        health_timeout=health_timeout,
        learnt=registry_for(client.catalog),  # the workers' algorithms join it as learnt
    )
    app = FastAPI(
        title="Speech platform gateway",
        version="1",
        summary="Run the platform's speech algorithms over HTTP.",
        lifespan=_lifespan,
    )
    app.state.door, app.state.jobs = state, jobs.Jobs(client)
    app.state.ledger = ledger = Ledger()
    app.add_middleware(HeaderLimits)
    app.add_middleware(
        Accounting, ledger=ledger, operations=lambda: state.operations, access_log=access_log
    )
    app.add_middleware(CloseUnreadBodies)  # outermost: also closes after a 431
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)
    app.include_router(routes.about)  # /v1/algorithms, /v1/health
    app.include_router(jobs.router)  # /v1/transcribe, /v1/jobs: before /v1/{algorithm}
    app.include_router(routes.calls)  # /v1/{algorithm}, which would take them
    app.add_api_route("/", _page, include_in_schema=False)
    app.add_api_route("/metrics", _metrics, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    openapi.install(app, lambda: state.catalog)  # POST /v1/<operation>, typed, as learnt
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    state: Door = app.state.door
    state.calls.shutdown(wait=False, cancel_futures=True)
    state.pings.shutdown(wait=False, cancel_futures=True)


async def _page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


async def _metrics(request: Request) -> PlainTextResponse:
    ledger: Ledger = request.app.state.ledger
    return PlainTextResponse(ledger.prometheus(), media_type="text/plain; version=0.0.4")


# --- every error in the same JSON shape: {"error": {"type", "message"}} -------------------
async def _speech_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpeechError)
    if isinstance(exc, InvalidInput):  # the caller's mistake: one line, no traceback
        log.warning(
            "%s %s refused: %s: %s", request.method, request.url.path, type(exc).__name__, exc
        )
    status = wire.http_status(exc)
    headers = {}
    if status in RETRY_LATER:
        later = getattr(exc, "retry_after", None) or door(request).retry_after
        headers["Retry-After"] = str(later)
    return JSONResponse({"error": wire.error_body(exc)}, status, headers=headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    # Framework errors (bad multipart, unknown path, wrong method) in the same shape.
    assert isinstance(exc, StarletteHTTPException)
    body = {"error": {"type": "HTTPError", "message": str(exc.detail)}}
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _gone(_: Request, __: Exception) -> JSONResponse:
    message = "the client went away before sending the whole request"
    return JSONResponse({"error": {"type": "InvalidInput", "message": message}}, 400)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # A bug of ours: the same JSON shape as every other error (the traceback is logged).
    return JSONResponse({"error": wire.error_body(exc)}, 500)


async def _unauthorized(_: Request, __: Exception) -> JSONResponse:
    message = "missing or wrong X-API-Key header"
    return JSONResponse({"error": {"type": "Unauthorized", "message": message}}, 401)


HANDLERS = {
    SpeechError: _speech_error,
    StarletteHTTPException: _http_error,
    ClientDisconnect: _gone,
    Exception: _unexpected,
    Unauthorized: _unauthorized,
}


def _log_to_stderr(log: logging.Logger) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def serve(client: Client, args: argparse.Namespace) -> int:
    import uvicorn

    from producer.servers.gateway.http11 import GatewayProtocol

    # uvicorn configures only its own loggers
    for name in ("speech.gateway", "speech.jobs", "speech.learn"):
        _log_to_stderr(logging.getLogger(name))
    https = gateway_files(settings())  # checked before anything starts
    # the access log is the gateway's own (producer.servers.gateway.accounting): it names
    # the caller's key, which uvicorn's cannot
    app = create_app(client, access_log=args.access_log)
    app.state.jobs.start()  # this process runs jobs from the store (producer.servers.jobs.runner)
    learner = Learner(client, app.state.door.learnt).start()  # every SPEECH_LEARN_SECONDS
    host = args.host or settings().gateway_host
    port = settings().gateway_port if args.port is None else args.port
    cert, key = https or (None, None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=GatewayProtocol,
        log_level=args.log_level,
        access_log=False,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )
    learner.stop()
    app.state.jobs.stop()
    return 0
