"""What the gateway's routers share: the door's state, the API key check, who a request
counts against, the one upload reader and the `timeout` option.

The upload reader knows HTTP (Content-Type, Content-Length, the query, the body as it
arrives) and nothing of where the audio goes: a router hands it the readers to feed,
in memory (producer.servers.forms) for calls, spooled to files (producer.servers.jobs.spool)
for recordings and jobs. Every check comes before the body is read, in the same order
for every route: the announced length, the Content-Type, the options in the query.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from producer.algorithms.catalog import Catalog
from producer.algorithms.learnt import Learnt
from producer.algorithms.options import check_timeout
from producer.errors import InvalidAudio
from producer.servers.forms import MULTIPART_SLACK, UploadBudget, too_large
from producer.servers.keys import Keys, RateLimit

# Content-Types taken as raw audio, besides audio/*.
RAW_TYPES = {"", "application/octet-stream"}
Fields = list[tuple[str, str]]
T_co = TypeVar("T_co", covariant=True)


@dataclass
class Door:
    """The gateway's state, built once by create_app and read by every route
    (`request.app.state.door`)."""

    client: Any  # producer.Client, or a test double that looks like one
    calls: ThreadPoolExecutor  # the Client blocks: calls run here, off the event loop
    pings: ThreadPoolExecutor  # health pings, answered even when every call thread is busy
    uploads: UploadBudget
    keys: Keys = field(default_factory=lambda: Keys({}))
    rate_limit: RateLimit | None = None
    retry_after: int = 1
    health_timeout: float = 1.0
    # The client's catalog and what the workers taught since (producer.algorithms.learnt)
    learnt: Learnt = field(default_factory=lambda: Learnt(Catalog([])))

    @property
    def catalog(self) -> Catalog:
        return self.learnt.catalog

    @property
    def operations(self) -> list[str]:
        return list(self.catalog.operations)

    @property
    def listing(self) -> dict[str, Any]:
        """GET /v1/algorithms: names, operations, declarations, and what was learnt."""
        known = self.catalog
        return {
            "algorithms": list(known.names),
            "operations": list(known.operations),
            "declarations": known.describe(),
            **self.learnt.report(),
        }

    def caller(self, request: Request) -> str:
        """Who a request counts against: its key's name when the gateway has keys (never
        the key), else the client's address."""
        named = getattr(request.state, "key_name", None)
        if named:
            return f"key:{named}"
        return "address:" + (request.client.host if request.client else "")


class Unauthorized(Exception):
    """Raised when a request lacks the gateway's X-API-Key (answered 401)."""


def door(request: Request) -> Door:
    state: Door = request.app.state.door
    return state


def authorized(
    request: Request, key: str | None = Depends(APIKeyHeader(name="X-API-Key", auto_error=False))
) -> None:
    """The routes' dependency: the X-API-Key header is one of the gateway's keys, if it has
    any (the key's name is kept for the request), and the caller is within its rate."""
    state = door(request)
    if state.keys:
        request.state.key_name = state.keys.name_of(key)
        if request.state.key_name is None:
            raise Unauthorized()
    if state.rate_limit is not None:
        wait = state.rate_limit.take(state.caller(request))
        if wait:
            raise state.rate_limit.refusal(wait)


class Reader(Protocol[T_co]):
    """What the upload reader feeds: the body chunk by chunk, then finish() for the upload."""

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> T_co: ...


async def read_upload(
    request: Request,
    max_bytes: int,
    take: Callable[[int], None],
    *,
    form: Callable[[str], Reader[T_co]],
    body: Callable[[], Reader[T_co]],
    setting: str | None = None,
    check_query: Callable[[Fields], Any] | None = None,
) -> tuple[T_co, Fields]:
    """The upload (what `form(content_type)` or `body()` makes of the body) and the query's
    fields. The body is counted by `take` (the upload budget) as it arrives and refused at
    the first byte past `max_bytes` (named by `setting`), or before any, given a
    Content-Length; `check_query` refuses bad options in the query before the body is read."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    length = announced_length(request)
    if length is not None and length > max_bytes + (MULTIPART_SLACK if multipart else 0):
        raise too_large(length, max_bytes, setting)
    reader: Reader[T_co]
    if multipart:
        reader = form(ctype)
    elif kind in RAW_TYPES or kind.startswith("audio/"):
        reader = body()
    else:
        raise not_audio(kind)
    query = request.query_params.multi_items()
    if check_query is not None:
        check_query(query)  # a bad option in the query costs no upload
    async for chunk in request.stream():
        take(len(chunk))  # Overloaded when all uploads together pass the gateway's budget
        reader.feed(chunk)
    return reader.finish(), query


def announced_length(request: Request) -> int | None:
    """The request's Content-Length, when it is a plain number."""
    length = request.headers.get("content-length", "")
    return int(length) if length.isascii() and length.isdigit() else None


def not_audio(kind: str) -> InvalidAudio:
    return InvalidAudio(
        f"Content-Type {kind[:60]!r} is not audio: send the audio as the body (audio/* or"
        " application/octet-stream) or as the 'audio' field of a multipart/form-data upload"
        + (
            " (curl --data-binary needs -H 'Content-Type: audio/wav')"
            if "urlencoded" in kind
            else ""
        )
    )


def timeout_option(options: dict[str, Any], default: float | None = None) -> float | None:
    """Take the `timeout` option out of `options` (it steers the call, the algorithm never
    sees it): checked, or `default` when there is none."""
    value = options.pop("timeout", None)
    return default if value is None else check_timeout(value)
