"""The gateway's own routes: the catalog and the workers' health (`about`), and a call to
any operation (`calls`: POST /v1/{algorithm}, mounted after the jobs routes, which it
would take). Each reads the gateway's state (producer.servers.door.Door) from the app.
"""

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from producer.algorithms.options import clips_for, fields_for, parse_options
from producer.errors import CallTimeout, InvalidInput, SpeechError
from producer.servers import wire
from producer.servers.door import Door, authorized, door, read_upload, timeout_option
from producer.servers.forms import BodyCounter, FormReader, Upload

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

about = APIRouter(dependencies=[Depends(authorized)])
calls = APIRouter(dependencies=[Depends(authorized)])


@about.get("/v1/algorithms")
async def algorithms(request: Request) -> dict[str, Any]:
    """The algorithm queues, the operations POST /v1/{algorithm} accepts, and each
    algorithm's declaration: summary, source, resources, and per operation its help,
    clips and options (kind, default, range or choices, help)."""
    return door(request).listing


@about.get("/v1/health", responses={503: {"description": "down"}})
async def health(request: Request) -> JSONResponse:
    """Ping every algorithm queue: is a worker answering, and how fast."""
    state = door(request)
    loop = asyncio.get_running_loop()
    names = list(state.catalog.names)
    probes = [
        loop.run_in_executor(state.pings, _probe, state.client, q, state.health_timeout)
        for q in names
    ]
    queues = dict(zip(names, await asyncio.gather(*probes), strict=True))
    alive = sum(q["alive"] for q in queues.values())
    status = "ok" if alive == len(queues) else "degraded" if alive else "down"
    return JSONResponse({"status": status, "queues": queues}, 200 if status == "ok" else 503)


@calls.post("/v1/{algorithm}", responses=ERROR_RESPONSES)
async def run(algorithm: str, request: Request) -> JSONResponse:
    """Run `algorithm` on the audio and answer its result (documented per operation
    by producer.servers.gateway.openapi)."""
    state = door(request)
    names = state.operations
    if algorithm not in names:
        known = ", ".join(names)
        message = f"unknown algorithm {algorithm[:60]!r}; known: {known}"
        return JSONResponse({"error": {"type": "UnknownAlgorithm", "message": message}}, 404)
    started = time.monotonic()
    max_bytes = state.client.max_payload_bytes
    with state.uploads.lease(state.caller(request)) as take:  # counted until the answer is sent
        upload, query = await read_upload(
            request,
            max_bytes,
            take,
            form=lambda ctype: FormReader(
                ctype, max_bytes, clips=clips_for(algorithm), fields=fields_for(algorithm)
            ),
            body=lambda: BodyCounter(max_bytes),
            check_query=lambda items: parse_options(algorithm, items),
        )
        clips, options = _clips_and_options(algorithm, upload, query)
        return await _answer(state, algorithm, clips, options, started)


def _clips_and_options(
    operation: str, upload: Upload, query: list[tuple[str, str]]
) -> tuple[list[bytes], dict[str, Any]]:
    """The clips and the typed options (query and form fields) of a call."""
    options = parse_options(operation, query + upload.fields)
    wanted = clips_for(operation)
    if len(upload.clips) != wanted:
        raise InvalidInput(f"{operation} takes {wanted} clip(s), got {len(upload.clips)}")
    return upload.clips, options


async def _answer(
    state: Door, algorithm: str, clips: list[bytes], options: dict[str, Any], started: float
) -> JSONResponse:
    """Run the call on a pool thread and answer its result as JSON."""
    client = state.client
    timeout = timeout_option(options, client.timeout)  # every other option goes to the algorithm
    assert timeout is not None
    deadline = started + timeout

    def call() -> dict[str, Any]:
        # Time spent waiting for a free thread counts against the caller's timeout.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CallTimeout(f"no gateway thread became free within {timeout:g} s")
        result = wire.invoke(client, algorithm, clips, remaining, options)
        return wire.plain(result, binary=False)  # base64 work off the event loop

    result = await asyncio.get_running_loop().run_in_executor(state.calls, call)
    seconds = round(time.monotonic() - started, 4)
    body = {"algorithm": algorithm, "result": result}
    return JSONResponse({**body, "seconds": seconds})


def _probe(client: Any, queue: str, timeout: float) -> dict[str, Any]:
    try:
        answer = client.ping(queue, timeout=timeout)
    except SpeechError as exc:
        return {"alive": False, "error": wire.error_body(exc)}
    return {"alive": True, "worker": answer["worker"], "rtt_ms": round(answer["rtt"] * 1000, 1)}
