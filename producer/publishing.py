"""How the Client's Celery app publishes a task: the same message, with less work per call.

Celery builds a protocol-2 task message (`app.amqp.as_task_v2`) and hands it to
`app.amqp.send_task_message`, which publishes it through a kombu Producer: signals, a
retry-policy merge, entity declarations, serializer lookup, the producer's batch state
and its own retry wrapper, on every call. For the Client's calls most of that has nothing
to do: the queues were declared once with the topology, no signal has a receiver, the
serializer is msgpack. `LeanAMQP` (the app's `amqp` class, a documented Celery extension
point) publishes those messages itself: serialize the body, publish it on the pooled
producer's channel and wait for the broker's confirm, inside kombu's `ensure`, which
reconnects (to the next broker address) and publishes again on a connection error just
as the Producer's retry did. The message on the wire is the one Celery would send
(headers, properties, msgpack body, per-message TTL from `expires`, persistent), so the
workers see no difference. Anything else (another exchange type, declarations, a sent
event through the producer) takes Celery's own path.
"""

from typing import Any

from celery.app.amqp import AMQP
from kombu import Queue
from kombu.serialization import dumps

# Options the lean path understands; a call with any other takes Celery's path.
LEAN_OPTIONS = frozenset(
    {"queue", "declare", "confirm_timeout", "expiration", "argsrepr", "kwargsrepr", "priority"}
)
PERSISTENT = 2


class LeanAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper with a shorter publish for direct-routed, pre-declared queues."""

    def _create_task_sender(self) -> Any:
        full = super()._create_task_sender()
        serializer = self.app.conf.task_serializer
        policy = dict(self.app.conf.task_publish_retry_policy or {})

        def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> Any:
            headers, properties, body, sent_event = message
            queue = options.get("queue")
            lean = (
                sent_event is None
                and not options.get("declare")
                and isinstance(queue, Queue)
                and (queue.exchange is None or queue.exchange.type == "direct")
                and options.keys() <= LEAN_OPTIONS
            )
            if not lean:
                return full(producer, name, message, **options)
            content_type, encoding, data = dumps(body, serializer=serializer)
            if options.get("expiration") is not None:  # as kombu writes it: milliseconds
                properties = {**properties, "expiration": str(int(options["expiration"] * 1000))}
            confirm_timeout = options.get("confirm_timeout")

            def publish() -> None:
                channel = producer.channel
                amqp_message = channel.prepare_message(
                    data, options.get("priority") or 0, content_type, encoding, headers,
                    {"delivery_mode": PERSISTENT, **properties},
                )  # fmt: skip
                # A direct exchange routes by queue name, as the default exchange does
                channel.basic_publish(
                    amqp_message, exchange="", routing_key=queue.name,
                    confirm_timeout=confirm_timeout,
                )  # fmt: skip

            return producer.connection.ensure(producer, publish, **policy)()

        return send_task_message
