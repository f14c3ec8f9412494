"""The worker's message consumer: Celery's, except that it dead-letters what it can't read.

Celery acks a message it cannot decode (a corrupt body) so that it does not loop; it is
then gone without a trace. And a well-formed message with a malformed body (a number where
the argument list belongs) raises out of the consumer and stops the whole worker, again at
every redelivery. Rejecting such messages without requeue sends them to the queue's
dead-letter exchange instead, where an operator can look, and the worker serves on.
"""

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer
from celery.worker.consumer.consumer import dump_body

log = logging.getLogger("speech.worker")
# What Celery's message handling raises on a body of the wrong shape.
_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError)


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
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
