"""`python -m producer bridge`: plain AMQP request/reply for backends that speak RabbitMQ.

A request is published on the default exchange to the durable queue `rpc.<algorithm>`
(`rpc.<algorithm>.<operation>` for algorithms with several, e.g. `rpc.speaker.verify`;
`rpc.transcribe` for a recording of any length, see producer/servers/operations.py)
with `reply_to` and `correlation_id` set, its body a msgpack map
`{"audio": <bin> or [<bin>, ...], "options": {...}, "timeout": <seconds, optional>}`.
The reply goes to `reply_to` (a named queue or RabbitMQ's direct reply-to) with the
same correlation_id: `{"ok": true, "result": {...}}` or
`{"ok": false, "error": {"type", "message"}}`.

Calls run through producer.Client in a thread pool. pika connections are not thread-safe,
so pool threads never touch the channel: they hand the finished reply back to the
connection's thread with `add_callback_threadsafe`, which publishes it (with publisher
confirms) and only then acks the request. A bridge that dies mid-call leaves its requests
unacked, so RabbitMQ hands them to another bridge; a request delivered more than
`bridge_delivery_limit` + 1 times is dead-lettered to `rpc.dead` instead. Requests nobody
can answer (no reply_to, or a direct reply-to name RabbitMQ never issued) are rejected
unrun and dead-lettered too. What a request may hold is checked by the pure functions of
producer/servers/bridge/request.py, which also bound every reply.

Replies go out on a connection of their own: a reply the broker refuses (406, e.g. larger
than its max message size) closes only its channel, and one it chokes on (541, a forged
direct reply-to name) only that connection, so the request is answered with a short error
or dead-lettered while the requests in flight on the consuming connection go on.
The broker URL may list several nodes (`;`): the bridge connects to the first that
answers and moves to the next when its node dies or stops answering heartbeats.

An algorithm learnt from its workers (producer.algorithms.learnt, asked every
SPEECH_LEARN_SECONDS) gets its `rpc.<operation>` queues declared and consumed within a
second, on the consuming connection's thread, without a restart.
"""

import argparse
import contextlib
import logging
import signal
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    NackError,
)
from pika.spec import Basic, BasicProperties

from producer import tls
from producer.algorithms.learnt import registry_for
from producer.brokers import broker_urls, safe_url, virtual_host
from producer.client.core import Client
from producer.client.learning import Learner
from producer.errors import InvalidInput, PayloadTooLarge, SpeechError, access_denied
from producer.servers import wire
from producer.servers.bridge.request import (
    MAX_ERROR_CHARS,
    Request,
    Unanswerable,
    check_reply_to,
    encode_reply,
    parse_request,
)
from producer.servers.keys import RateLimit
from producer.settings import settings
from producer.topology import BRIDGE_QUEUE_PREFIX

__all__ = ["MAX_ERROR_CHARS", "Bridge", "encode_reply", "parse_request", "run_bridge"]

# Seconds a connection blocked by a broker alarm (memory, disk) may stay blocked before
# the bridge drops it and tries another node: a blocked node cannot take its replies.
BLOCKED_CONNECTION_TIMEOUT = 60.0


def pika_parameters(url: str) -> Any:
    """pika connection parameters for one broker URL: right vhost, heartbeats, one attempt.

    One attempt because the caller walks the URL list itself; query parameters written
    in the URL (`?heartbeat=30`) win over the configured ones."""
    params = pika.URLParameters(url)
    params.virtual_host = virtual_host(url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "heartbeat" not in query:
        # pika wants whole seconds; 0 turns heartbeats off.
        seconds = settings().heartbeat
        params.heartbeat = max(1, round(seconds)) if seconds > 0 else 0
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    if "socket_timeout" not in query:
        params.socket_timeout = settings().connect_timeout
    if tls.uses_tls(url):
        # the platform's context (peer verified, client certificate): never pika's default
        params.ssl_options = pika.SSLOptions(tls.context(settings()), tls.server_hostname(url))
    return params


log = logging.getLogger("speech.bridge")
REPLY_PROPERTIES = {"content_type": "application/msgpack"}
QUEUE_PREFIX = BRIDGE_QUEUE_PREFIX
# AMQP reply code: while declaring, a queue exists with other arguments; while publishing,
# the broker refused the message (too large, bad property).
PRECONDITION_FAILED = 406
# AMQP reply code with which RabbitMQ closes a connection that published to a direct
# reply-to name it cannot decode (a forged or corrupted pid).
INTERNAL_ERROR = 541
# Quorum queues, like the algorithm queues: replicated on every node of a cluster, so the
# bridge's queues and the requests in them outlive any one node (a classic queue lives on
# the node that declared it, and cannot be declared again elsewhere while that node is down).
QUORUM = {"x-queue-type": "quorum"}
# rpc.dead keeps what it is sent for inspection, within bounds a flood of bad requests
# cannot pass (the oldest go first).
DEAD_QUEUE_BOUNDS = {"x-max-length": 10_000, "x-max-length-bytes": 1024**3}
# Seconds a stopping bridge waits for calls in flight to be answered.
DRAIN_SECONDS = 30.0
# Pause after every node failed in turn, doubling up to the maximum.
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
# How the bridge's connections are named in RabbitMQ's management UI and rabbitmqctl.
CONNECTION_NAME = "speech-bridge"
# Seconds between services of the reply connection's heartbeats while it is idle.
KEEPALIVE_SECONDS = 1.0


class QueuesConflict(Exception):
    """Raised when a bridge queue exists with other arguments: retrying cannot help."""


class Bridge:
    """Consumes every `rpc.<algorithm>` queue and answers through a Client."""

    def __init__(self, client: Client, concurrency: int) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="bridge-call")
        # each caller (its RabbitMQ user) held to SPEECH_RATE_LIMIT, as the gateway's keys are
        rate, burst = settings().rate_limit, settings().rate_burst
        self.rate_limit = RateLimit(rate, burst) if rate > 0 else None
        # One queue per operation: rpc.asr, rpc.speaker.verify, and those of algorithms
        # learnt from their workers (producer.algorithms.learnt) as they are learnt.
        self.learnt = registry_for(client.catalog)
        self._consumed_catalog = self.learnt.catalog
        operations = [*self._consumed_catalog.operations, "transcribe"]
        self.queues = {f"{QUEUE_PREFIX}{op}": op for op in operations}
        self.stopping = threading.Event()
        self.in_flight = 0  # touched only on the connection's thread
        # The Client's effective URL list (an explicit --broker beats CELERY_BROKER_URL).
        conf = client.app.conf
        self.urls = broker_urls(conf.broker_write_url or conf.broker_url)
        self.connection: pika.BlockingConnection | None = None
        self.served = False  # the last connection got as far as consuming
        self._channels: list[BlockingChannel] = []
        self.replies: ReplyConnection | None = None

    # --- life cycle ------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stop(); on failure move to the next node, pausing after a full round."""
        backoff, failures, node = BACKOFF_FIRST, 0, 0
        while not self.stopping.is_set():
            url = self.urls[node % len(self.urls)]
            self.served = False
            try:
                self._serve_connection(url)
            except QueuesConflict as exc:
                log.error("cannot declare the bridge queues on %s: %s", safe_url(url), exc)
                return 1
            except AMQPConnectionError as exc:
                log.warning("broker %s unreachable or lost (%s)", safe_url(url), _reason(exc, url))
            except AMQPError as exc:
                if denied := access_denied(exc):  # the user's rights: retrying cannot help
                    log.error("bridge cannot serve on %s: %s", safe_url(url), denied)
                    return 1
                log.warning("AMQP error on %s: %r", safe_url(url), exc)
            if self.stopping.is_set():
                break
            node += 1  # whatever failed, the next attempt goes to the next node
            if self.served:  # a node that served died: try the next one at once
                backoff, failures = BACKOFF_FIRST, 0
                continue
            failures += 1
            if failures % len(self.urls) == 0:
                log.info("no broker node answered; retrying in %.1f s", backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        self.pool.shutdown(wait=False, cancel_futures=True)
        return 0

    def stop(self) -> None:
        """Stop taking requests; requests in flight are still answered (from any thread)."""
        self.stopping.set()
        conn = self.connection
        if conn is not None and conn.is_open:
            conn.add_callback_threadsafe(lambda: self._stop_consuming())

    def _stop_consuming(self) -> None:
        for channel in self._channels:
            if channel.is_open:
                channel.stop_consuming()

    def _serve_connection(self, url: str) -> None:
        params = pika_parameters(url)
        params.client_properties = {"connection_name": CONNECTION_NAME}  # for rabbitmqctl, UI
        self.connection = conn = pika.BlockingConnection(params)
        log.info("bridge connected to %s", safe_url(url))
        self.in_flight = 0  # calls begun on a lost connection are redelivered, not answered
        self.replies = replies = ReplyConnection(url)
        try:
            channel = conn.channel()
            self._channels = [channel]
            self._declare(channel)
            channel.basic_qos(prefetch_count=self.concurrency)
            for queue, algorithm in self.queues.items():
                channel.basic_consume(queue, partial(self._on_request, algorithm))
            self.served = True
            log.info("bridge consuming %s, %d at a time", ", ".join(self.queues), self.concurrency)
            self._keep_alive(conn, replies)
            if not self.stopping.is_set():
                channel.start_consuming()
            self._drain(conn)
        finally:
            self.connection = None
            replies.close()
            if conn.is_open:
                conn.close()

    def _keep_alive(self, conn: pika.BlockingConnection, replies: "ReplyConnection") -> None:
        """Answer the reply connection's heartbeats while requests come in on `conn`, and
        consume the queues of algorithms learnt meanwhile."""
        replies.service()
        if self.learnt.catalog is not self._consumed_catalog and not self.stopping.is_set():
            self._consume_learnt()
        if conn.is_open:
            conn.call_later(KEEPALIVE_SECONDS, lambda: self._keep_alive(conn, replies))

    def _consume_learnt(self) -> None:
        """Declare and consume `rpc.<operation>` for each operation learnt since the last
        look (on the connection's thread, between deliveries)."""
        self._consumed_catalog = known = self.learnt.catalog
        new = {f"{QUEUE_PREFIX}{op}": op for op in known.operations}
        new = {queue: op for queue, op in new.items() if queue not in self.queues}
        if not new or not self._channels or not self._channels[0].is_open:
            return
        channel = self._channels[0]
        self._declare_queues(channel, list(new))
        self.queues.update(new)
        for queue, operation in new.items():
            channel.basic_consume(queue, partial(self._on_request, operation))
        log.info("bridge consuming %s, learnt from their workers", ", ".join(new))

    def _declare(self, channel: BlockingChannel) -> None:
        dlx, dead = settings().bridge_dlx, settings().bridge_dead_queue
        step = "Exchange.declare"  # pika's refusals do not say which method was refused
        try:
            channel.exchange_declare(dlx, "fanout", durable=True)
            step = "Queue.declare"
            channel.queue_declare(dead, durable=True, arguments={**QUORUM, **DEAD_QUEUE_BOUNDS})
            step = "Queue.bind"
            channel.queue_bind(dead, dlx)
        except ChannelClosedByBroker as exc:
            exc.method_name = step  # read by producer.errors.access_denied
            if exc.reply_code == PRECONDITION_FAILED:
                raise _conflict(exc) from exc
            raise
        self._declare_queues(channel, list(self.queues))

    def _declare_queues(self, channel: BlockingChannel, queues: list[str]) -> None:
        dlx = settings().bridge_dlx
        try:
            for queue in queues:
                arguments = {
                    **QUORUM,
                    "x-dead-letter-exchange": dlx,
                    "x-delivery-limit": settings().bridge_delivery_limit,
                }
                channel.queue_declare(queue, durable=True, arguments=arguments)
        except ChannelClosedByBroker as exc:
            exc.method_name = "Queue.declare"  # read by producer.errors.access_denied
            if exc.reply_code == PRECONDITION_FAILED:
                raise _conflict(exc) from exc
            raise

    def _drain(self, conn: pika.BlockingConnection) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.in_flight and time.monotonic() < deadline and conn.is_open:
            conn.process_data_events(time_limit=0.1)
        if self.in_flight:
            log.warning(
                "stopping with %d requests unanswered: RabbitMQ redelivers them", self.in_flight
            )

    # --- requests ----------------------------------------------------------------------------
    def _on_request(
        self,
        operation: str,
        channel: BlockingChannel,
        method: Basic.Deliver,
        props: BasicProperties,
        body: bytes,
    ) -> None:
        try:
            check_reply_to(props.reply_to)
        except Unanswerable as exc:
            # Nowhere to send an answer: keep the request for inspection instead of losing it.
            log.warning("request on %s dead-lettered unrun: %s", method.routing_key, exc)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        caller = caller_of(props)
        try:
            request = parse_request(body, operation)
        except InvalidInput as exc:
            log.warning(
                "%s request from %s refused: %s: %s", operation, caller, type(exc).__name__, exc
            )
            self._answer(channel, method, props, encode_reply(exc))
            return
        if self.rate_limit is not None and (wait := self.rate_limit.take(caller)):
            refused = self.rate_limit.refusal(wait)
            log.warning("%s request from %s refused: %s", operation, caller, refused)
            self._answer(channel, method, props, encode_reply(refused))
            return
        self.in_flight += 1
        conn = self.connection
        assert conn is not None
        future = self.pool.submit(self._call, request, caller)
        future.add_done_callback(
            lambda f: _threadsafe(conn, partial(self._finish, channel, method, props, f))
        )

    def _call(self, request: Request, caller: str) -> bytes:
        operation = request.operation
        try:
            outcome = wire.invoke(
                self.client, operation, request.clips, request.timeout, request.options
            )
            return encode_reply(outcome)
        except SpeechError as exc:
            if isinstance(exc, InvalidInput):  # the caller's mistake: one line, no traceback
                log.warning(
                    "%s request from %s refused: %s: %s", operation, caller, type(exc).__name__, exc
                )
            return encode_reply(exc)
        except Exception as exc:  # a bug must still answer the caller, not strand it
            log.exception("unexpected error running %s", operation)
            return encode_reply(exc)

    def _finish(
        self, channel: BlockingChannel, method: Basic.Deliver, props: BasicProperties, f: Future
    ) -> None:
        self.in_flight -= 1
        self._answer(channel, method, props, f.result())

    def _answer(
        self, channel: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        if not channel.is_open:
            return  # the request is redelivered to whoever consumes next
        assert self.replies is not None
        try:
            self.replies.publish(props, body)
        except ConnectionClosedByBroker as exc:
            if exc.reply_code != INTERNAL_ERROR:
                raise  # the node went away: the request is redelivered (delivery limit)
            # The broker choked on this reply's address (a direct reply-to name it cannot
            # resolve): only the reply connection paid for it; never take the request again.
            log.warning(
                "reply to %.120r closed the reply connection (%s %s): request on %s"
                " dead-lettered", props.reply_to, exc.reply_code, exc.reply_text,
                method.routing_key,
            )  # fmt: skip
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        except (ChannelClosedByBroker, NackError) as exc:
            # The broker refused this reply, not the connection: tell the caller briefly,
            # and never requeue a request whose answer can never be delivered.
            refusal = getattr(exc, "reply_text", None) or type(exc).__name__
            log.warning(
                "reply of %d bytes to %.120r refused by the broker: %.200s",
                len(body), props.reply_to, refusal,
            )  # fmt: skip
            if not self._publish_refusal(props, len(body), exc):
                channel.basic_reject(method.delivery_tag, requeue=False)
                return
        channel.basic_ack(method.delivery_tag)

    def _publish_refusal(self, props: BasicProperties, size: int, exc: Exception) -> bool:
        """Answer with a short error instead of the refused reply; False if that fails too."""
        refusal = (getattr(exc, "reply_text", None) or type(exc).__name__)[:200]
        message = f"the broker refused the reply ({size} bytes): {refusal}"
        too_large = getattr(exc, "reply_code", None) == PRECONDITION_FAILED and "size" in refusal
        error = PayloadTooLarge(message) if too_large else SpeechError(message)
        assert self.replies is not None
        try:
            self.replies.publish(props, encode_reply(error))
            return True
        except AMQPError as exc:
            log.warning(
                "error reply to %.120r refused too (%s): dead-lettered", props.reply_to, exc
            )
            return False


class ReplyConnection:
    """The connection replies are published on (with confirms), apart from the consuming one.

    RabbitMQ closes a connection that publishes to a direct reply-to name it cannot resolve
    (541 INTERNAL_ERROR). Were replies published where requests are consumed, one forged
    name would drop every request in flight and bring its own request back, again and again.
    Used only from the consuming connection's thread; opened on the first reply.
    """

    def __init__(self, url: str) -> None:
        self.params = pika_parameters(url)
        self.params.client_properties = {"connection_name": f"{CONNECTION_NAME}-replies"}
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.params)

    def publish(self, props: BasicProperties, body: bytes) -> None:
        """Publish a reply and wait for its confirm; a closed connection is reopened once."""
        try:
            self._publish(props, body)
        except ConnectionClosedByBroker:
            self.close()
            raise
        except AMQPConnectionError:  # the idle reply connection was lost: try a fresh one
            self.close()
            self._publish(props, body)

    def _publish(self, props: BasicProperties, body: bytes) -> None:
        if self.connection is None or not self.connection.is_open:
            self.connection, self.channel = self.connect(), None
        if self.channel is None or not self.channel.is_open:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()  # a reply counts as published once the broker has it
        reply = BasicProperties(correlation_id=props.correlation_id, **REPLY_PROPERTIES)
        self.channel.basic_publish("", props.reply_to, body, reply)

    def service(self) -> None:
        """Answer heartbeats; a connection found dead is dropped and reopened when needed."""
        if self.connection is None:
            return
        try:
            self.connection.process_data_events(time_limit=0)
        except AMQPError as exc:
            log.info("reply connection lost (%s): reopened on the next reply", _reason(exc))
            self.close()

    def close(self) -> None:
        conn, self.connection, self.channel = self.connection, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(AMQPError):
                conn.close()


def caller_of(props: BasicProperties) -> str:
    """Who sent a request: its RabbitMQ user, from the `user_id` property the broker checks
    against the connection's user (a request without it is "anonymous")."""
    return f"user:{props.user_id}" if props.user_id else "anonymous"


def _conflict(exc: ChannelClosedByBroker) -> QueuesConflict:
    """The error for a queue that exists with other arguments."""
    return QueuesConflict(
        f"{exc.reply_text}. Queues of an older bridge (other arguments) must be"
        " drained and deleted before this one can declare them"
        " (rabbitmqctl delete_queue --vhost VHOST QUEUE)"
    )


def _reason(exc: BaseException, url: str = "") -> str:
    """What went wrong, in words: pika wraps a refused connection in two empty-looking errors."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    cause = getattr(cause, "exception", None) or cause  # pika's connector errors carry it
    explained = tls.explain(cause, url) if url else None
    return explained or str(cause) or type(cause).__name__


def _threadsafe(conn: pika.BlockingConnection, callback: Any) -> None:
    try:
        conn.add_callback_threadsafe(callback)
    except Exception:  # the connection closed while the call ran: the request is redelivered
        log.info("connection closed before a reply could be sent")


def run_bridge(client: Client, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # pika logs every failed attempt as several ERRORs with a traceback; the bridge logs one
    # line per attempt itself (which node, why), so only pika's worst news is kept.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    bridge = Bridge(client, args.concurrency or settings().bridge_concurrency)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: bridge.stop())
    learner = Learner(client, bridge.learnt).start()  # every SPEECH_LEARN_SECONDS
    status = bridge.run()
    learner.stop()
    log.info("bridge stopped")
    return status
