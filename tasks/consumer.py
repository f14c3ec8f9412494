"""The worker's message consumer: Celery's, except that it dead-letters what it can't read
(and skips native delayed delivery, which it never uses).

Celery acks a message it cannot decode (a corrupt body) so that it does not loop; it is
then gone without a trace. And a well-formed message with a malformed body (a number where
the argument list belongs) raises out of the consumer and stops the whole worker, again at
every redelivery. Rejecting such messages without requeue sends them to the queue's
dead-letter exchange instead, where an operator can look, and the worker serves on.
"""

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from celery.worker.consumer import Consumer
from celery.worker.consumer.consumer import dump_body

from producer.errors import access_denied
from tasks.plugins import CannotServe

log = logging.getLogger("speech.worker")
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}
# What Celery's message handling raises on a body of the wrong shape.
_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError)


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        # Without native delayed delivery. Calls here are RPC with deadlines, never scheduled
        # (no eta/countdown), and at every consumer (re)start that step declares its
        # celery_delayed_* exchanges and queues through each URL of the broker list in turn,
        # retrying a dead node for seconds before the worker consumes again.
        default_steps = [
            step
            for step in Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

    def __init__(
        self, *args: Any, initial_prefetch_count: int = 2, prefetch_multiplier: int = 1,
        app: Any = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        # Operations run in batches need their requests delivered together: raise the
        # prefetch to a running batch and the next one per process (tasks/batch.py).
        from tasks.batch import prefetch_multiplier as batch_multiplier

        wanted = batch_multiplier(app) if app is not None else 0
        if wanted > prefetch_multiplier and initial_prefetch_count:
            initial_prefetch_count = initial_prefetch_count // max(1, prefetch_multiplier) * wanted
            prefetch_multiplier = wanted
        super().__init__(
            *args, initial_prefetch_count=initial_prefetch_count,
            prefetch_multiplier=prefetch_multiplier, app=app, **kwargs,
        )  # fmt: skip

    def start(self) -> None:
        # A right the worker's user lacks (RabbitMQ's 403) will be lacking at every retry:
        # stop with one line naming it instead of Celery's "Unrecoverable error" traceback.
        try:
            super().start()
        except Exception as exc:
            denied = access_denied(exc)
            if denied is None:
                raise
            raise CannotServe(f"worker cannot serve its queues: {denied}") from None

    def ensure_connected(self, conn: Any) -> Any:
        # Try again every second while the broker is away, not after Celery's growing
        # 2, 4, 6 ... 30 s pauses: a broker back after a 10 s restart is served at once.
        # (With several broker URLs, each pause comes only after every URL failed once.)
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, exc, "cannot be decoded")

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except _MALFORMED as exc:
                self._dead_letter(message, exc, "is malformed")
                return None

        return on_task_received

    def _dead_letter(self, message: Any, exc: Exception, why: str) -> None:
        log.error(
            "dead-lettering a message that %s (%r): content_type=%r body=%s",
            why,
            exc,
            message.content_type,
            dump_body(message, message.body),
        )
        if not message.acknowledged:
            message.reject(requeue=False)
