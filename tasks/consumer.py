"""The worker's message consumer: Celery's, except that it dead-letters what it can't read.

Celery acks a message it cannot decode (refused content type such as pickle, or a corrupt
body) so that it does not loop; it is then gone without a trace. Rejecting it without
requeue sends it to the queue's dead-letter exchange instead, where an operator can look.
"""

import logging
from typing import Any

from celery.worker.consumer import Consumer
from celery.worker.consumer.consumer import dump_body

log = logging.getLogger("speech.worker")


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        log.error(
            "dead-lettering a message that cannot be decoded (%r): content_type=%r body=%s",
            exc,
            message.content_type,
            dump_body(message, message.body),
        )
        message.reject(requeue=False)
