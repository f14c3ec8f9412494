"""The broker entities: one durable direct exchange, one quorum queue per algorithm, one
dead-letter queue. Built from the settings, declared by producers and workers alike."""

from typing import Any

from kombu import Exchange, Queue

from producer.settings import settings

# The AMQP bridge consumes `rpc.<operation>` on the default exchange (producer/servers/bridge).
BRIDGE_QUEUE_PREFIX = "rpc."
# Each Client's reply queue: `speech.reply.<uuid>`, exclusive to the connection that
# declared it (producer/client/replies.py).
REPLY_QUEUE_PREFIX = "speech.reply."


def speech_exchange() -> Exchange:
    return Exchange(settings().exchange, type="direct", durable=True)


def dead_letter_queue() -> Queue:
    """What the queues refuse or give up on: refused or undecodable messages, unknown tasks,
    requests over the redelivery cap, requests that expired unrun. Nothing vanishes."""
    name = settings().dead_letter
    exchange = Exchange(name, type="fanout", durable=True)
    return Queue(name, exchange, durable=True, queue_arguments={"x-queue-type": "quorum"})


def algorithm_queue(name: str) -> Queue:
    """Quorum queues: replicated when the broker is a cluster, and they count deliveries
    (x-delivery-limit), which classic queues cannot."""
    s = settings()
    return Queue(
        name,
        speech_exchange(),
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": s.dead_letter,
            "x-delivery-limit": s.max_redeliveries,
            # Quorum queues admit one message past x-max-length before refusing
            # (measured on 3.10), so this bounds the backlog at exactly max_backlog.
            "x-max-length": max(0, s.max_backlog - 1),
            "x-overflow": "reject-publish",
        },
    )


def declare_dead_letters(connection: Any) -> None:
    """The dead-letter exchange and queue: must exist before a queue rejects anything,
    or RabbitMQ drops what it dead-letters. Idempotent."""
    with connection.channel() as channel:
        dead_letter_queue()(channel).declare()


def declare_algorithm_queues(connection: Any, names: tuple[str, ...]) -> None:
    """The algorithms' queues, declared once by a producer: a request sent before any
    worker started waits in its queue (publishes name their queue, they do not declare
    it). Idempotent."""
    with connection.channel() as channel:
        for name in names:
            algorithm_queue(name)(channel).declare()
