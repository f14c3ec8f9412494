"""Batched inference: requests of one operation that arrive together run in one pass.

For an operation declared with `batch="module:function"` (producer/algorithms/declare.py) the
worker's main process holds the requests it receives instead of handing each to the pool
at once. A batch leaves for a pool process when one is free (after `batch_wait_ms`, 0 by
default) or when it is full (`batch_size`, capped by the declaration's `max_batch`); the
requests that arrive while every process is busy make the next batch. In the process:

1. each request is decoded and checked as the task would (its clips, its options); one
   that fails any check is left out of the pass;
2. the batch function runs once over the rest and gives one result or one exception per
   request; if it raises as a whole, nobody gets a result from it;
3. every request then goes through Celery's own task tracer, one by one, exactly as
   unbatched: the task returns (or raises) the result the pass made for it, or, when the
   pass made none, does the work alone. So each request is answered on its own reply
   queue, logged, counted in events, and fails alone with its own error (a bad clip, an
   answer too large); the main process acks each message once it is answered.

A request delivered again (its worker died, or its connection) runs alone: if it killed
the process running its batch, it cannot take its batch-mates towards the delivery limit.

Time limits: a batch runs under one request's soft and hard limits, and holds only
requests up to `batch_max_bytes` (larger ones run alone): short clips, so the pass ends
far below the limits. A batch that still passes the soft limit fails each request with
the soft limit's error, answered and acked; a hard limit or a lost process is handled
for each request as Celery handles it for one (answered, or requeued for the delivery
limit to catch).
"""

import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.imports import symbol_by_name
from celery.worker import state as worker_state
from celery.worker.request import create_request_cls

from producer.algorithms.catalog import catalog
from producer.algorithms.declare import Operation, resolve
from tasks.base import app, batch_made, decode_clips

log = logging.getLogger("speech.worker")


def operation_key(task_name: str) -> str:
    """ "speaker.embed" for the task "speech.speaker.embed" (see `declare.task_name`)."""
    return task_name.split(".", 1)[1]


def prefetch_multiplier(app: Any) -> int:
    """The prefetch multiplier the batched operations of the queues this worker serves
    need (0 if none): a process's running batch and the next one, all unacked."""
    served = set(app.amqp.queues.consume_from or ())
    sizes = [
        batch_size(operation, app.conf)
        for algorithm, operation in catalog().operations.values()
        if algorithm.name in served
    ]
    return 2 * max(sizes) if sizes and max(sizes) > 1 else 0


def batch_size(operation: Operation, conf: Any) -> int:
    """Requests per batch for `operation` on this worker: 1 means no batching."""
    if operation.batch is None:
        return 1
    return max(1, min(operation.max_batch, int(conf.batch_size)))


class Batcher:
    """The main process's side: holds one operation's requests and sends them in batches."""

    def __init__(
        self, task: Any, app: Any, consumer: Any, alone: Callable[..., Any], size: int
    ) -> None:
        self.task, self.app, self.consumer, self.alone = task, app, consumer, alone
        self.size = size
        self.wait = float(app.conf.batch_wait_ms) / 1000
        self.max_bytes = int(app.conf.batch_max_bytes)
        self.pending: list[Any] = []
        self.running = 0
        self._timer: Any = None
        self.Request = create_request_cls(
            symbol_by_name(task.Request),
            task,
            consumer.pool,
            consumer.hostname,
            consumer.event_dispatcher,
            app=app,
        )

    # --- arrivals ---------------------------------------------------------------------
    def on_message(self, message: Any, body: Any, ack: Any, reject: Any, *args: Any, **kw: Any):
        payload_v2 = body is None and "args" not in message.payload
        # A redelivered request may be the one that killed the pool process running its
        # batch: alone, it can take nobody else with it towards the delivery limit.
        redelivered = (message.delivery_info or {}).get("redelivered")
        if not payload_v2 or redelivered or len(message.body) > self.max_bytes:
            return self.alone(message, body, ack, reject, *args, **kw)  # alone, as always
        req = self.Request(
            message,
            on_ack=ack,
            on_reject=reject,
            app=self.app,
            hostname=self.consumer.hostname,
            eventer=self.consumer.event_dispatcher,
            task=self.task,
            connection_errors=self.consumer.connection_errors,
            body=message.body,
            headers=message.headers,
            decoded=False,
            utc=self.app.uses_utc_timezone(),
        )
        if req.expires and req.revoked():
            return None
        signals.task_received.send(sender=self.consumer, request=req)
        req.send_event("task-received", name=req.name, args=req.argsrepr, kwargs=req.kwargsrepr)
        worker_state.task_reserved(req)
        for callback in (args[0] if args else None) or ():
            callback(req)
        self.pending.append(req)
        self._arrived()
        return None

    def _free(self) -> bool:
        return self.running < max(1, int(self.consumer.pool.num_processes or 1))

    def _arrived(self) -> None:
        if not self._free():
            return  # the batch that ends next sends what waits
        if len(self.pending) >= self.size or self.wait <= 0:
            self._send()
        elif self._timer is None:
            self._timer = self.consumer.timer.call_after(self.wait, self._waited)

    def _waited(self) -> None:
        self._timer = None
        if self.pending and self._free():
            self._send()

    # --- to the pool and back -----------------------------------------------------------
    def _send(self) -> None:
        batch, self.pending = self.pending[: self.size], self.pending[self.size :]
        batch = [req for req in batch if not (req.expires and req.revoked())]
        if not batch:
            return
        self.running += 1
        ended = _Once(self._ended)

        def accepted(pid: int, time_accepted: float) -> None:
            for req in batch:
                req.on_accepted(pid, time_accepted)

        def timed_out(soft: bool, timeout: float) -> None:
            for req in batch:
                req.on_timeout(soft, timeout)

        def succeeded(traced: list[Any], **_: Any) -> None:
            try:
                for req, outcome in zip(batch, traced, strict=True):
                    req.on_success(outcome)
            finally:
                ended()

        def failed(exc_info: Any, **_: Any) -> None:
            try:
                for req in batch:
                    req.on_failure(exc_info)
            finally:
                ended()

        items = [
            (req.type, req.id, req.request_dict, req.body, req.content_type,
             req.content_encoding)
            for req in batch
        ]  # fmt: skip
        try:
            self.consumer.pool.apply_async(
                run_batch,
                args=(self.task.name, items),
                accept_callback=accepted,
                timeout_callback=timed_out,
                callback=succeeded,
                error_callback=failed,
                soft_timeout=self.task.soft_time_limit,
                timeout=self.task.time_limit,
                correlation_id=batch[0].id,
            )
        except Exception:
            ended()
            raise

    def _ended(self) -> None:
        self.running -= 1
        if self.pending and self._free():
            self._send()


class _Once:
    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn, self.done = fn, False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.fn()


# --- the pool process's side ------------------------------------------------------------
def run_batch(task_name: str, items: list[tuple[Any, ...]]) -> list[Any]:
    """In a pool process: the batched pass, then Celery's trace of each request."""
    from celery.app.trace import fast_trace_task, trace_task_ret

    key = operation_key(task_name)
    operation = catalog().operation(key)
    assert operation is not None, key
    ids = [item[1] for item in items]
    try:
        try:
            prepare(key, operation, items, app)
        except SoftTimeLimitExceeded as exc:  # past one request's limit: each fails with it
            batch_made.update((task_id, exc) for task_id in ids)
        trace = fast_trace_task if app.use_fast_trace_task else trace_task_ret
        return [trace(*item, app=app) for item in items]
    finally:
        for task_id in ids:
            batch_made.pop(task_id, None)


def prepare(key: str, operation: Operation, items: list[tuple[Any, ...]], app: Any) -> None:
    """Run `operation`'s batch function over the requests that pass their checks; what it
    makes for each is left in batch_made for the request's own trace to return."""
    from kombu.serialization import loads, prepare_accept_content

    accept = prepare_accept_content(app.conf.accept_content)
    ready: list[tuple[str, list[Any], dict[str, Any]]] = []
    for _type, task_id, _request, body, content_type, encoding in items:
        try:
            args, kwargs, _embed = loads(body, content_type, encoding, accept=accept)
            if len(args) != operation.clips:
                continue
            ready.append((task_id, decode_clips(args), operation.validate(key, kwargs)))
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # noqa: S112  (its own trace runs it alone and reports the error)
            continue
    if not ready:
        return
    assert operation.batch is not None
    started = monotonic()
    try:
        made = resolve(operation.batch)([(clips, options) for _, clips, options in ready])
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        log.exception("batched %s failed as a whole; its %d requests run alone", key, len(ready))
        return
    if len(made) != len(ready):
        log.error("batched %s gave %d answers for %d requests; they run alone",
                  key, len(made), len(ready))  # fmt: skip
        return
    batch_made.update(
        (task_id, outcome) for (task_id, _, _), outcome in zip(ready, made, strict=True)
    )
    log.info(
        "batched %s: %d requests, %d in one pass of %.3f s",
        key, len(items), len(ready), monotonic() - started,
    )  # fmt: skip
