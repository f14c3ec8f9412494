"""Declare the broker entities that Celery does not declare by itself."""

from typing import Any

import celeryconfig


def declare_dead_letters(connection: Any) -> None:
    """The dead-letter exchange and queue: must exist before a queue rejects anything,
    or RabbitMQ drops what it dead-letters. Idempotent."""
    with connection.channel() as channel:
        celeryconfig.dead_letter_queue(channel).declare()
