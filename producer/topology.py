"""Declare the broker entities that Celery does not declare by itself."""

from typing import Any

import celeryconfig


def declare_dead_letters(connection: Any) -> None:
    """The dead-letter exchange and queue: must exist before a queue rejects anything,
    or RabbitMQ drops what it dead-letters. Idempotent."""
    with connection.channel() as channel:
        celeryconfig.dead_letter_queue(channel).declare()


def declare_algorithm_queues(connection: Any, names: tuple[str, ...]) -> None:
    """The algorithms' queues, declared once by a producer: a request sent before any
    worker started waits in its queue (publishes name their queue, they do not declare
    it). Idempotent."""
    with connection.channel() as channel:
        for name in names:
            celeryconfig.algorithm_queue(name)(channel).declare()
