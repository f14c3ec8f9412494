"""What a message may ask of the worker: which task to run, with which arguments, nothing
more. Time limits and queues are the worker's to decide, whatever a caller writes.

- `timelimit` (what `apply_async(time_limit=..., soft_time_limit=...)` sends) is ignored:
  each task runs under the limits configured for it (tasks/*.py, celeryconfig.py). Letting
  callers lower them is no safer than raising them: a hard limit of 1 ms SIGKILLs the pool
  process, which must then load and warm its models again (10-17 s for speaker) while
  other callers wait; a raised one runs into RabbitMQ's consumer_timeout. A caller who
  wants less already has its own timeout (and the request's `expires`).
- `eta`/`countdown` are ignored: calls are RPC with deadlines, and a message held for a
  future ETA stays unacked in the worker past consumer_timeout.
- A task runs only from its own algorithm's queue: `speech.features` sent to `asr` is
  rejected without requeue, so the queue dead-letters it to `speech.dead`. `speech.ping`
  runs on every queue; any other task without a route runs nowhere. Celery's own tasks
  (`celery.chord_unlock`, `celery.starmap`, ...) are not even registered (tasks/base.py):
  they would run what their caller names, from any queue, with the worker's credentials.
- A message that asks the worker to send anything on after the task (`link`/`link_error`
  callbacks, a chain, a chord) is dead-lettered unrun: those would publish a message the
  caller named, to an exchange and routing key the caller named, with the worker's
  credentials. The platform's calls never carry them.

Queues are bound by their own name (direct exchange, routing key = queue name; the
default exchange routes by queue name too), so the routing key a message arrived with
names the queue it came from.
"""

import logging
from typing import Any

from celery import Task
from celery.worker.request import Request
from celery.worker.strategy import default as default_strategy

log = logging.getLogger("speech.worker")
# Headers through which a caller would steer the worker rather than the task.
IGNORED_HEADERS = ("timelimit", "eta")
# The one task without a queue of its own: it answers on whichever queue it is sent to.
ANYWHERE = "speech.ping"
# What a message body (args, kwargs, embed) may carry in its embed to make the worker
# publish after the task: refused, never run.
ONWARD = ("callbacks", "errbacks", "chain", "chord")


class WorkerRequest(Request):  # type: ignore[misc]
    """Celery's request, minus the caller's time limits and ETA."""

    def __init__(self, message: Any, *args: Any, headers: Any = None, **kwargs: Any) -> None:
        headers = dict(message.headers if headers is None else headers)
        ignored = {key: headers.pop(key) for key in IGNORED_HEADERS if headers.get(key)}
        if any(value not in (None, [None, None], (None, None)) for value in ignored.values()):
            # %.200s: the values are the caller's, of any size
            log.warning("ignoring caller-supplied %.200s in %.40s", ignored, headers.get("id"))
        super().__init__(message, *args, headers=headers, **kwargs)


def queue_guard(task: Task, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy for `task`, refusing messages from another task's queue
    and messages that ask for work after the task (see the module)."""
    handle = default_strategy(task, app, consumer, **kwargs)
    handle = batched(task, app, consumer, handle)
    home = (app.conf.task_routes or {}).get(task.name, {}).get("queue")

    def on_message(message: Any, body: Any, ack: Any, reject: Any, *args: Any, **kw: Any) -> Any:
        arrived = (message.delivery_info or {}).get("routing_key")
        if home is None and task.name != ANYWHERE:
            why = f"it arrived on queue {arrived!r}, and it has no queue of its own"
        elif home is not None and arrived != home:
            why = f"it arrived on queue {arrived!r}, it runs only from {home!r}"
        else:
            why = onward(message)
        if why:
            log.error(
                "dead-lettering %s %s: %s",
                task.name,
                message.headers.get("id") if message.headers else None,
                why,
            )
            if not message.acknowledged:
                message.reject(requeue=False)
            return None
        return handle(message, body, ack, reject, *args, **kw)

    return on_message


def onward(message: Any) -> str:
    """Why `message` is refused for asking the worker to publish after the task ("": it
    does not). A body of the wrong shape is left to Celery (tasks/consumer.py)."""
    try:
        embed = message.payload[2]  # decoded once, kept by kombu for Celery's own use
    except Exception:  # undecodable or of another shape: Celery dead-letters it
        return ""
    asked = [key for key in ONWARD if isinstance(embed, dict) and embed.get(key)]
    if not asked:
        return ""
    return f"it asks for {', '.join(asked)} after the task; workers send nothing onward"


def batched(task: Task, app: Any, consumer: Any, handle: Any) -> Any:
    """`handle`, or for an operation declared with a batch function, a tasks.batch.Batcher
    that sends its requests to the pool in batches (and the others to `handle`)."""
    from producer.algorithms.catalog import catalog
    from tasks.batch import Batcher, batch_size, operation_key

    if not task.name.startswith("speech.") or task.name == ANYWHERE:
        return handle
    operation = catalog().operation(operation_key(task.name))
    size = 1 if operation is None else batch_size(operation, app.conf)
    if size <= 1:
        return handle
    log.info("%s: requests run in batches of up to %d", task.name, size)
    return Batcher(task, app, consumer, handle, size).on_message


class SpeechTask(Task):  # type: ignore[misc]
    """Every task of the workers (the app's task_cls): guarded strategy and request."""

    Strategy = "tasks.guard:queue_guard"
    Request = "tasks.guard:WorkerRequest"
