"""The baseline: a minimal hand-written RabbitMQ RPC with pika (reply_to + correlation_id,
msgpack bodies), with the same shape as the Celery path: a durable queue, persistent
requests, one reply queue per client connection, server processes with prefetch 1.
"""

import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable

import msgpack
import pika

QUEUE = "bench.raw"
# The same guarantees as the platform's queues: quorum queue, publisher confirms.
SAFE_QUEUE = "bench.raw.quorum"
QUORUM = {"x-queue-type": "quorum"}


def _declare(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> None:
    ch.queue_declare(queue, durable=True, arguments=QUORUM if queue == SAFE_QUEUE else None)


def serve(url: str, queue: str = QUEUE) -> None:
    """A server process: answer each request with host and time, like speech.ping."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    _declare(ch, queue)
    ch.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body):  # type: ignore[no-untyped-def]
        msgpack.unpackb(body)
        reply = msgpack.packb(
            {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        )
        ch.basic_publish(
            "", props.reply_to, reply, pika.BasicProperties(correlation_id=props.correlation_id)
        )
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_request)
    ch.start_consuming()


def start_servers(url: str, count: int, queue: str = QUEUE) -> list[multiprocessing.Process]:
    procs = [
        multiprocessing.Process(target=serve, args=(url, queue), daemon=True) for _ in range(count)
    ]
    for p in procs:
        p.start()
    return procs


class _Line:
    """A client connection with its own exclusive reply queue, read by the calling thread."""

    def __init__(self, url: str, confirm: bool, queue: str | None = None) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        if queue is not None:
            _declare(self.ch, queue)
        if confirm:
            self.ch.confirm_delivery()
        self.reply_queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.answers: dict[str, bytes] = {}
        self.ch.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(self, ch, method, props, body):  # type: ignore[no-untyped-def]
        self.answers[props.correlation_id] = body

    def answer(self, cid: str) -> bytes:
        while cid not in self.answers:
            self.conn.process_data_events(time_limit=1)
        return self.answers.pop(cid)


def caller(url: str, queue: str = QUEUE) -> Callable[[], dict]:
    """One client connection with its own exclusive reply queue; returns a blocking call."""
    line = _Line(url, queue == SAFE_QUEUE, queue)
    ch, reply_queue = line.ch, line.reply_queue
    request = msgpack.packb({"args": [], "kwargs": {}})

    def call() -> dict:
        cid = uuid.uuid4().hex
        props = pika.BasicProperties(reply_to=reply_queue, correlation_id=cid, delivery_mode=2)
        ch.basic_publish("", queue, request, props)
        return msgpack.unpackb(line.answer(cid))

    return call


def celery_caller(url: str, queue: str = "asr") -> Callable[[], tuple[dict, float]]:
    """The least any client can do against Celery's worker: the Client's protocol-2 task
    message for `speech.ping`, published with pika and a publisher confirm, its answer
    read from an exclusive reply queue by the calling thread itself. Each call returns
    the ping's answer and when the publish was confirmed (time.time())."""
    from producer import Client

    with Client(url) as client:  # only for its Celery app's message builder
        build = client.app.amqp.as_task_v2
    line = _Line(url, confirm=True)
    ch, reply_queue = line.ch, line.reply_queue

    def call() -> tuple[dict, float]:
        task_id = str(uuid.uuid4())
        headers, properties, body, _ = build(
            task_id, "speech.ping", [], {}, expires=60.0, reply_to=reply_queue
        )
        props = pika.BasicProperties(
            content_type="application/x-msgpack", content_encoding="binary",
            headers=headers, delivery_mode=2, expiration="60000", **properties,
        )  # fmt: skip
        ch.basic_publish("", queue, msgpack.packb(body), props)
        confirmed = time.time()
        meta = msgpack.unpackb(line.answer(task_id))
        return meta["result"], confirmed

    return call
