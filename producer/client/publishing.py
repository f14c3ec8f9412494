"""How the Client's Celery app publishes a task: the same message, with less work per call.

Celery builds a protocol-2 task message (`app.amqp.as_task_v2`) and hands it to
`app.amqp.send_task_message`, which publishes it through a kombu Producer: signals, a
retry-policy merge, entity declarations, serializer lookup, the producer's batch state
and its own retry wrapper, on every call. For the Client's calls most of that has nothing
to do: the queues were declared once with the topology, no signal has a receiver, the
serializer is msgpack. `LeanAMQP` (the app's `amqp` class, a documented Celery extension
point) publishes those messages itself: serialize the body and hand it to the app's
`publisher` (producer/client/links.py), which publishes it with a confirm on a link of its own,
every socket operation bounded by the caller's deadline, moving to the next broker node
when one stops answering. The kombu Producer Celery acquires for the call is never
connected. The message on the wire is the one Celery would send
(headers, properties, msgpack body, per-message TTL from `expires`, persistent), so the
workers see no difference. Anything else (another exchange type, declarations, a sent
event through the producer) takes Celery's own path.
"""

import time
from typing import Any

import amqp
from celery.app.amqp import AMQP
from kombu import Queue
from kombu.serialization import dumps

# Options the lean path understands; a call with any other takes Celery's path.
LEAN_OPTIONS = frozenset(
    {"queue", "declare", "confirm_timeout", "expiration", "argsrepr", "kwargsrepr", "priority"}
)
PERSISTENT = 2


def _understood(key: str, value: Any, queue: Queue, serializer: str) -> bool:
    """Whether the lean path sends what Celery would for this option. A task registered
    in the app (e.g. `tasks` imported beside a Client) adds its defaults to every call."""
    if key in LEAN_OPTIONS or value is None:
        return True
    exchange = queue.exchange.name if queue.exchange is not None else ""
    return (
        (key == "serializer" and value == serializer)
        or (key == "delivery_mode" and value in (PERSISTENT, "persistent"))
        or (key == "routing_key" and value == queue.name)
        or (key == "exchange" and value in ("", exchange))
    )


class LeanAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper with a shorter publish for direct-routed, pre-declared queues,
    through the app's `publisher` (producer.client.links.Publisher) when it has one."""

    def _create_task_sender(self) -> Any:
        full = super()._create_task_sender()
        serializer = self.app.conf.task_serializer

        def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> Any:
            headers, properties, body, sent_event = message
            queue = options.get("queue")
            publisher = getattr(self.app, "publisher", None)
            lean = (
                publisher is not None
                and sent_event is None
                # declare=[]: the caller declared its queues (the Client does, once); a
                # plain send_task lets Celery declare the queue it names
                and options.get("declare") == []
                and isinstance(queue, Queue)
                and (queue.exchange is None or queue.exchange.type == "direct")
                and all(_understood(k, v, queue, serializer) for k, v in options.items())
            )
            if not lean and getattr(producer, "shared_idle", False):
                # the Client's one idle producer is no place for a real publish: threads
                # would share its connection; Celery's path gets one of its own
                with self.app.producer_pool.acquire(block=True) as own:
                    return full(own, name, message, **options)
            if not lean:
                return full(producer, name, message, **options)
            content_type, encoding, data = dumps(body, serializer=serializer)
            if options.get("expiration") is not None:  # as kombu writes it: milliseconds
                properties = {**properties, "expiration": str(int(options["expiration"] * 1000))}
            # The caller's patience bounds the publish (the Client passes what is left of
            # its timeout); a plain send_task waits as long as its message lives.
            patience = options.get("confirm_timeout") or max(
                options.get("expiration") or 0, self.app.conf.broker_connection_timeout
            )
            amqp_message = amqp.Message(
                data, priority=options.get("priority") or 0, content_type=content_type,
                content_encoding=encoding, application_headers=headers,
                **{"delivery_mode": PERSISTENT, **properties},
            )  # fmt: skip
            # The queue's own direct exchange, routed by queue name: callers need write on
            # it alone, not on the default exchange (which reaches every queue)
            exchange = queue.exchange.name if queue.exchange is not None else ""
            publisher.publish(amqp_message, queue.name, time.monotonic() + patience, exchange)

        return send_task_message
