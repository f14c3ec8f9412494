"""One log line per task, for log shippers: task id, queue, outcome, duration.

The format is chosen by SPEECH_TASK_LOG_FORMAT (producer/settings.py):

    keyvalue  ts=2025-01-01T12:00:00.123Z event=task task_id=... task=speech.asr queue=asr
              outcome=success duration_ms=412.7 worker=asr@host
    json      {"ts": "...", "event": "task", "task_id": "...", ..., "duration_ms": 412.7}
    off       no task lines

A caller's mistake (InvalidInput and its subclasses: bad audio, bad options) is also one
line of the worker's log at WARNING, with the task id, the error's type and message and no
traceback: it says what was refused, and real errors, which keep their tracebacks, stay
easy to find. Celery's own "raised expected" line for it (INFO) is left out.

The task lines go to the process's real stderr with no prefix, so every line is a whole record
(Celery's own log lines carry a "[time: LEVEL/Process]" prefix that a JSON parser would
trip on). They are written whatever the worker's `-l` level: like a web server's access log,
they are the record of work done, not diagnostics.
"""

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from celery import signals

from producer.errors import InvalidInput
from tasks.base import app

log = logging.getLogger("speech.tasks")
refused = logging.getLogger("speech.worker")
FORMATS = ("keyvalue", "json", "off")

# task id -> (monotonic start, worker hostname); filled at prerun, emptied at postrun.
_started: dict[str, float] = {}
# task id -> exception class name, set by task_failure just before task_postrun runs.
_errors: dict[str, str] = {}


def format_record(fields: dict[str, Any], fmt: str) -> str:
    """One task record as a single line in `fmt` ("keyvalue" or "json")."""
    if fmt == "json":
        return json.dumps(fields, separators=(",", ":"), default=str)
    return " ".join(f"{key}={_kv_value(value)}" for key, value in fields.items())


def _kv_value(value: Any) -> str:
    text = "" if value is None else str(value)
    # Quote only what a key=value parser would split on; json quoting escapes the rest.
    if not text or any(c in text for c in ' ="\\\n\t'):
        return json.dumps(text)
    return text


def _emit(**fields: Any) -> None:
    fmt = app.conf.task_log_format
    if fmt == "off" or not log.handlers:
        return
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    log.info(format_record({"ts": now, "event": "task", **fields}, fmt))


def _queue(request: Any) -> str | None:
    # The platform routes with a direct exchange where routing key == queue name.
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key")


@signals.worker_init.connect
def _setup(**_: Any) -> None:
    """Give the task log its own handler in the worker's main process (children inherit)."""
    fmt = app.conf.task_log_format
    if fmt not in FORMATS:
        # SystemExit, not ValueError: Celery logs and swallows a signal handler's Exception,
        # and a worker must not run silently without the log it was configured to write.
        raise SystemExit(
            f"task_log_format (SPEECH_TASK_LOG_FORMAT) is {fmt!r}; use one of {FORMATS}"
        )
    if fmt == "off" or log.handlers:
        return
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@signals.task_prerun.connect
def _on_prerun(task_id: str, **_: Any) -> None:
    _started[task_id] = time.monotonic()


@signals.task_failure.connect
def _on_failure(task_id: str, exception: BaseException, sender: Any = None, **_: Any) -> None:
    _errors[task_id] = type(exception).__name__
    if isinstance(exception, InvalidInput):
        name = getattr(sender, "name", "?")
        refused.warning(
            "task %s[%s] refused: %s: %s", name, task_id, type(exception).__name__, exception
        )


def _not_celerys_expected_line(record: logging.LogRecord) -> bool:
    """Celery's INFO line for an error in a task's `throws`: the WARNING above says it."""
    return getattr(record, "data", {}).get("description") != "raised expected"


logging.getLogger("celery.app.trace").addFilter(_not_celerys_expected_line)


@signals.task_postrun.connect
def _on_postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    error = _errors.pop(task_id, None)
    duration = None if started is None else round((time.monotonic() - started) * 1000, 1)
    fields: dict[str, Any] = {
        "task_id": task_id,
        "task": task.name,
        "queue": _queue(task.request),
        "outcome": (state or "unknown").lower(),
        "duration_ms": duration,
        "worker": task.request.hostname,
    }
    if error:
        fields["error"] = error
    _emit(**fields)


@signals.task_revoked.connect
def _on_revoked(sender: Any, request: Any, expired: bool = False, **_: Any) -> None:
    # Expired requests (the caller stopped waiting) are dropped unrun: no duration.
    # `request` is a bare Context here (no task name): the sender is the task.
    _emit(
        task_id=request.id,
        task=getattr(sender, "name", None),
        queue=_queue(request),
        outcome="expired" if expired else "revoked",
        duration_ms=0.0,
        worker=request.hostname,
    )
