"""The gateway's routes for recordings and jobs (an APIRouter, mounted by create_app).

- `POST /v1/transcribe`: a recording of any length (up to SPEECH_MAX_RECORDING_BYTES),
  transcribed while the caller waits; the upload is spooled to the data folder as it
  arrives (transcribe reads its windows from a file), counted, and removed afterwards.
- `POST /v1/jobs`: the same upload rules for any operation (or `transcribe`), named by the
  `algorithm` field; answered 202 at once with the job's id. The job is stored (state and
  audio) only once everything about the request has been checked, and runs on the job
  threads of whichever gateway sharing the store claims it (producer.servers.jobs.runner).
- `GET /v1/jobs/{id}`: state, progress, result or error; `DELETE /v1/jobs/{id}` cancels.

Both uploads count against the gateway's upload budget and the caller's share of it while
they arrive (producer.servers.forms.UploadBudget), like every other upload. Jobs are
bounded before anything is stored: per caller (SPEECH_JOBS_PER_CALLER, 429), all
together (SPEECH_JOBS_MAX, 429) and by the audio the store holds (SPEECH_JOBS_MAX_BYTES,
507); checked from the Content-Length before the body is read, and again when the job is
stored.
"""

import asyncio
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from producer.algorithms.learnt import known
from producer.algorithms.options import check_timeout, clips_for
from producer.errors import InvalidInput, UnknownJob
from producer.servers import operations, wire
from producer.servers.door import announced_length, authorized, door, read_upload, timeout_option
from producer.servers.forms import too_large
from producer.servers.jobs.callbacks import Policy
from producer.servers.jobs.runner import JobRunner
from producer.servers.jobs.spool import Spool, SpooledBody, SpooledForm
from producer.servers.jobs.store import JobStore
from producer.settings import settings

JOB_ID = re.compile(r"[0-9a-f]{32}")  # used with fullmatch: no trailing newline
MAX_CALLBACK_CHARS = 2048
RECORDING_SETTING = "SPEECH_MAX_RECORDING_BYTES"
PAYLOAD_SETTING = "SPEECH_MAX_PAYLOAD_BYTES"
JOB_FIELDS = ("algorithm", "callback")  # a job's own fields, besides its options


class Jobs:
    """The gateway's job store and runner, made on first use (create_app stays cheap)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.data_dir = Path(settings().data_dir)
        self.spool_dir = self.data_dir / "spool"
        self.callbacks = Policy.parse(settings().callback_allow)
        self._lock = threading.Lock()
        self._store: JobStore | None = None
        self._runner: JobRunner | None = None

    # The most clips and form fields any request may carry (the forms are read before the
    # operation they name is known): asked each time, an algorithm learnt from its workers
    # may take more.
    @property
    def most_clips(self) -> int:
        return max(clips_for(name) for name in operations.names())

    @property
    def most_fields(self) -> int:
        return max(
            len(operations.TRANSCRIBE_OPERATION.options) + 1,
            *(len(op.options) + 1 for _, op in known().operations.values()),
        ) + len(JOB_FIELDS)

    @property
    def store(self) -> JobStore:
        with self._lock:
            if self._store is None:
                self._store = JobStore(
                    settings().jobs_db,
                    self.data_dir,
                    per_caller=settings().jobs_per_caller,
                    most=settings().jobs_max,
                    max_bytes=settings().jobs_max_bytes,
                )
            return self._store

    @property
    def runner(self) -> JobRunner:
        store = self.store
        with self._lock:
            if self._runner is None:
                self._runner = JobRunner(
                    self.client,
                    store,
                    self.spool_dir,
                    threads=settings().job_threads,
                    lease=settings().job_lease,
                    retention=settings().job_retention,
                    secret=settings().callback_secret,
                    callback_attempts=settings().callback_attempts,
                    callbacks=self.callbacks,
                    max_queued=settings().job_max_queued_seconds,
                )
            return self._runner

    def start(self) -> None:
        """Run jobs in this process (the `serve` command; an app made for tests does not)."""
        self.runner.start()

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()

    def wake(self) -> None:
        if self._runner is not None:
            self._runner.wake()


router = APIRouter(dependencies=[Depends(authorized)])


@router.post("/v1/transcribe")
async def transcribe(request: Request) -> JSONResponse:
    """Transcribe a recording of any length: vad, then asr on its speech in parallel."""
    state, jobs = door(request), _jobs(request)
    started = time.monotonic()
    spool = Spool(jobs.spool_dir)
    try:
        limit = settings().max_recording_bytes
        with state.uploads.lease(state.caller(request)) as take:  # while the upload arrives
            paths, fields = await _receive(
                request, spool, limit, RECORDING_SETTING, 1, jobs.most_fields, take,
                check_query=lambda items: operations.parse(operations.TRANSCRIBE, items),
            )  # fmt: skip
        options = operations.parse(operations.TRANSCRIBE, fields)
        timeout = timeout_option(options)

        def run() -> Any:
            result = operations.transcribe(state.client, str(paths[0]), timeout, options)
            return wire.plain(result, binary=False)

        result = await asyncio.get_running_loop().run_in_executor(state.calls, run)
    finally:
        spool.close()
    seconds = round(time.monotonic() - started, 4)
    return JSONResponse({"algorithm": "transcribe", "result": result, "seconds": seconds})


@router.post("/v1/jobs", status_code=202)
async def submit(request: Request) -> JSONResponse:
    """Start a job: multipart with `algorithm`, `audio`, its options, optional `callback`."""
    state, jobs = door(request), _jobs(request)
    spool = Spool(jobs.spool_dir)
    who = state.caller(request)
    loop = asyncio.get_running_loop()
    try:
        named = [v for k, v in request.query_params.multi_items() if k == "algorithm"]
        limit, setting = _limit(named[0] if named else "")
        announced = announced_length(request) or 0
        # Over a job limit: refused before the body is read
        await loop.run_in_executor(None, lambda: jobs.store.admit(who, announced))
        with state.uploads.lease(who) as take:  # while the upload arrives
            paths, fields = await _receive(
                request, spool, limit, setting, jobs.most_clips, jobs.most_fields, take
            )
        operation, callback, options = _job_request(fields)
        if callback is not None:  # resolved off the event loop: DNS may take its time
            await loop.run_in_executor(None, lambda: jobs.callbacks.check(callback))
        wanted = clips_for(operation)
        if len(paths) != wanted:
            raise InvalidInput(f"{operation} takes {wanted} clip(s), got {len(paths)}")
        most, setting = _limit(operation)
        for path in paths:  # refused before anything is stored
            if path.stat().st_size > most:
                raise too_large(path.stat().st_size, most, setting)
        job = await loop.run_in_executor(
            None, lambda: jobs.store.create(operation, options, paths, callback, who)
        )
    finally:
        spool.close()
    jobs.wake()
    view = {"id": job.id, "state": job.state}
    return JSONResponse(view, 202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/v1/jobs/{job_id}")
async def status(job_id: str, request: Request) -> JSONResponse:
    """The job: state (queued, running, done, failed, cancelled), progress, result, error."""
    store = _jobs(request).store
    job = await asyncio.get_running_loop().run_in_executor(None, store.get, _job_id(job_id))
    return JSONResponse(job.view())


@router.delete("/v1/jobs/{job_id}")
async def cancel(job_id: str, request: Request) -> JSONResponse:
    """Cancel the job: a queued one never starts, a running one stops between segments."""
    store = _jobs(request).store
    job = await asyncio.get_running_loop().run_in_executor(None, store.cancel, _job_id(job_id))
    return JSONResponse(job.view())


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


async def _receive(
    request: Request,
    spool: Spool,
    max_bytes: int,
    setting: str,
    clips: int,
    fields: int,
    take: Callable[[int], None],
    check_query: Callable[[list[tuple[str, str]]], Any] | None = None,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """The uploaded clips (spool files) and the fields of the query and the form."""
    form_fields, query = await read_upload(
        request,
        max_bytes,
        take,
        form=lambda ctype: SpooledForm(
            spool, ctype, max_bytes, setting, clips=clips, fields=fields
        ),
        body=lambda: SpooledBody(spool, max_bytes, setting),
        setting=setting,
        check_query=check_query,
    )
    return list(spool.paths), query + form_fields


def _job_request(fields: list[tuple[str, str]]) -> tuple[str, str | None, dict[str, Any]]:
    """The operation, the callback URL and the typed options of a job request."""
    own: dict[str, str] = {}
    items = []
    for name, value in fields:
        if name in JOB_FIELDS:
            if name in own:
                raise InvalidInput(f"field {name} is given twice")
            own[name] = value
        else:
            items.append((name, value))
    if "algorithm" not in own:
        known = ", ".join(operations.names())
        raise InvalidInput(f"a job needs the 'algorithm' field: one of {known}")
    operation = operations.check_name(own["algorithm"])
    options = operations.parse(operation, items)
    if "timeout" in options:
        options["timeout"] = check_timeout(options["timeout"])
    return operation, _callback(own.get("callback") or None), options


def _callback(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if len(url) > MAX_CALLBACK_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"callback must be an http(s) URL of up to {MAX_CALLBACK_CHARS} characters,"
            f" got {url[:80]!r}"
        )
    if not settings().callback_secret:
        raise InvalidInput(
            "this gateway sends no callbacks: callbacks are signed, and SPEECH_CALLBACK_SECRET"
            " is not set"
        )
    return url


def _limit(operation: str) -> tuple[int, str]:
    """The largest clip `operation` takes, and the setting that says so ("": any)."""
    recording = (settings().max_recording_bytes, RECORDING_SETTING)
    payload = (settings().max_payload_bytes, PAYLOAD_SETTING)
    if not operation:  # not known before the form is read: the larger, checked again after
        return max(recording, payload)
    return recording if operation == operations.TRANSCRIBE else payload


def _job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise UnknownJob(f"no job {job_id[:40]!r}: job ids are 32 hexadecimal digits")
    return job_id
