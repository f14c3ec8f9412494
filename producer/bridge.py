"""`python -m producer bridge`: plain AMQP request/reply for backends that speak RabbitMQ.

A request is published on the default exchange to the durable queue `rpc.<algorithm>`
(`rpc.<algorithm>.<operation>` for algorithms with several, e.g. `rpc.speaker.verify`)
with `reply_to` and `correlation_id` set, its body a msgpack map
`{"audio": <bin> or [<bin>, ...], "options": {...}, "timeout": <seconds, optional>}`.
The reply goes to `reply_to` (a named queue or RabbitMQ's direct reply-to) with the
same correlation_id: `{"ok": true, "result": {...}}` or
`{"ok": false, "error": {"type", "message"}}`.

Calls run through producer.Client in a thread pool. pika connections are not thread-safe,
so pool threads never touch the channel: they hand the finished reply back to the
connection's thread with `add_callback_threadsafe`, which publishes it (with publisher
confirms) and only then acks the request. A bridge that dies mid-call leaves its requests
unacked, so RabbitMQ hands them to another bridge. Requests nobody can answer (no
reply_to) are rejected without requeue and dead-lettered to `rpc.dead`.

Replies go out on a channel of their own: a reply the broker refuses (406, e.g. larger
than its max message size) closes only that channel, so the request can still be
answered with a short error (or dead-lettered) and the other calls in flight go on.
The broker URL may list several nodes (`;`): the bridge connects to the first that
answers and moves to the next when its node dies or stops answering heartbeats.
"""

import argparse
import logging
import signal
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import msgpack
import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPConnectionError, AMQPError, ChannelClosedByBroker, NackError
from pika.spec import Basic, BasicProperties

import celeryconfig
from producer import wire
from producer.brokers import broker_urls, safe_url, virtual_host
from producer.client import Client
from producer.errors import InvalidInput, PayloadTooLarge, SpeechError

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
        seconds = celeryconfig.broker_heartbeat
        params.heartbeat = max(1, round(seconds)) if seconds > 0 else 0
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    if "socket_timeout" not in query:
        params.socket_timeout = celeryconfig.broker_connection_timeout
    return params


log = logging.getLogger("speech.bridge")
REQUEST_KEYS = {"audio", "options", "timeout"}
REPLY_PROPERTIES = {"content_type": "application/msgpack"}
# AMQP reply code: while declaring, a queue exists with other arguments; while publishing,
# the broker refused the message (too large, bad property).
PRECONDITION_FAILED = 406
# Quorum queues, like the algorithm queues: replicated on every node of a cluster, so the
# bridge's queues and the requests in them outlive any one node (a classic queue lives on
# the node that declared it, and cannot be declared again elsewhere while that node is down).
QUORUM = {"x-queue-type": "quorum"}
# Seconds a stopping bridge waits for calls in flight to be answered.
DRAIN_SECONDS = 30.0
# Pause after every node failed in turn, doubling up to the maximum.
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
# How the bridge's connections are named in RabbitMQ's management UI and rabbitmqctl.
CONNECTION_NAME = "speech-bridge"
# Error replies quote what the caller sent (a bad field, a bad value): keep them short so
# a huge input never makes a huge reply.
MAX_ERROR_CHARS = 500


class QueuesConflict(Exception):
    """Raised when a bridge queue exists with other arguments: retrying cannot help."""


def parse_request(body: bytes) -> tuple[list[bytes], dict[str, Any], float | None]:
    """The clips, options and timeout of a request body; InvalidInput says what is wrong.

    `audio` is one clip (bytes) or a list of clips (speaker.verify takes two)."""
    try:
        request = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise InvalidInput(f"request body is not msgpack ({exc or type(exc).__name__})") from None
    if not isinstance(request, dict):
        raise InvalidInput(f"request must be a msgpack map, got {type(request).__name__}")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown request fields {sorted(map(str, unknown))}; allowed: audio, options, timeout"
        )
    audio = request.get("audio")
    clips = audio if isinstance(audio, list) and audio else [audio]
    if not all(isinstance(clip, bytes) for clip in clips):
        got = "nothing" if audio is None else type(audio).__name__
        raise InvalidInput(f"'audio' must be msgpack binary (bytes) or a list of them, got {got}")
    options = request.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise InvalidInput("'options' must be a map with string keys")
    timeout = request.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise InvalidInput(f"'timeout' must be a number of seconds, got {timeout!r}")
    return clips, options, timeout


def encode_reply(outcome: dict[str, Any] | BaseException) -> bytes:
    if isinstance(outcome, BaseException):
        error = wire.error_body(outcome)
        error["message"] = _shorten(str(error["message"]))
        reply: dict[str, Any] = {"ok": False, "error": error}
    else:
        reply = {"ok": True, "result": wire.plain(outcome, binary=True)}
    return msgpack.packb(reply, use_bin_type=True)


def _shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} chars)"


class Bridge:
    """Consumes every `rpc.<algorithm>` queue and answers through a Client."""

    def __init__(self, client: Client, concurrency: int) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="bridge-call")
        # One queue per operation: rpc.asr, and rpc.speaker.verify once operations exist.
        prefix = celeryconfig.bridge_queue_prefix
        self.queues = {f"{prefix}{op}": op for op in wire.operations(client)}
        self.stopping = threading.Event()
        self.in_flight = 0  # touched only on the connection's thread
        # The Client's effective URL list (an explicit --broker beats CELERY_BROKER_URL).
        conf = client.app.conf
        self.urls = broker_urls(conf.broker_write_url or conf.broker_url)
        self.connection: pika.BlockingConnection | None = None
        self.served = False  # the last connection got as far as consuming
        self._channels: list[BlockingChannel] = []
        self._reply_channel: BlockingChannel | None = None

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
                log.warning("broker %s unreachable or lost (%s)", safe_url(url), _reason(exc))
            except AMQPError as exc:
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
        try:
            channel = conn.channel()
            self._channels = [channel]
            self._declare(channel)
            self._reply_channel = None  # opened on the first reply
            channel.basic_qos(prefetch_count=self.concurrency)
            for queue, algorithm in self.queues.items():
                channel.basic_consume(queue, partial(self._on_request, algorithm))
            self.served = True
            log.info("bridge consuming %s, %d at a time", ", ".join(self.queues), self.concurrency)
            if not self.stopping.is_set():
                channel.start_consuming()
            self._drain(conn)
        finally:
            self.connection = None
            if conn.is_open:
                conn.close()

    def _declare(self, channel: BlockingChannel) -> None:
        dlx, dead = celeryconfig.bridge_dead_letter_exchange, celeryconfig.bridge_dead_letter_queue
        try:
            channel.exchange_declare(dlx, "fanout", durable=True)
            channel.queue_declare(dead, durable=True, arguments=QUORUM)
            channel.queue_bind(dead, dlx)
            for queue in self.queues:
                arguments = {**QUORUM, "x-dead-letter-exchange": dlx}
                channel.queue_declare(queue, durable=True, arguments=arguments)
        except ChannelClosedByBroker as exc:
            if exc.reply_code == PRECONDITION_FAILED:
                raise QueuesConflict(exc.reply_text) from exc
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
        algorithm: str,
        channel: BlockingChannel,
        method: Basic.Deliver,
        props: BasicProperties,
        body: bytes,
    ) -> None:
        if not props.reply_to:
            # Nowhere to send an answer: keep the request for inspection instead of losing it.
            log.warning("request on %s without reply_to: dead-lettered", method.routing_key)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        try:
            clips, options, timeout = parse_request(body)
        except InvalidInput as exc:
            self._answer(channel, method, props, encode_reply(exc))
            return
        self.in_flight += 1
        conn = self.connection
        assert conn is not None
        future = self.pool.submit(self._call, algorithm, clips, options, timeout)
        future.add_done_callback(
            lambda f: _threadsafe(conn, partial(self._finish, channel, method, props, f))
        )

    def _call(
        self, operation: str, clips: list[bytes], options: dict[str, Any], timeout: float | None
    ) -> bytes:
        try:
            return encode_reply(wire.invoke(self.client, operation, clips, timeout, options))
        except SpeechError as exc:
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
        try:
            self._publish(props, body)
        except (ChannelClosedByBroker, NackError) as exc:
            # The broker refused this reply, not the connection: tell the caller briefly,
            # and never requeue a request whose answer can never be delivered.
            refusal = getattr(exc, "reply_text", None) or type(exc).__name__
            log.warning(
                "reply of %d bytes to %s refused by the broker: %s",
                len(body), props.reply_to, _shorten(refusal, 200),
            )  # fmt: skip
            if not self._publish_refusal(props, len(body), exc):
                channel.basic_reject(method.delivery_tag, requeue=False)
                return
        channel.basic_ack(method.delivery_tag)

    def _publish(self, props: BasicProperties, body: bytes) -> None:
        """Publish a reply and wait for the broker's confirm, reopening a refused channel."""
        channel = self._reply_channel
        if channel is None or not channel.is_open:
            assert self.connection is not None
            channel = self._reply_channel = self.connection.channel()
            channel.confirm_delivery()  # a reply counts as published once the broker has it
        reply = BasicProperties(correlation_id=props.correlation_id, **REPLY_PROPERTIES)
        channel.basic_publish("", props.reply_to, body, reply)

    def _publish_refusal(self, props: BasicProperties, size: int, exc: Exception) -> bool:
        """Answer with a short error instead of the refused reply; False if that fails too."""
        refusal = _shorten(getattr(exc, "reply_text", None) or type(exc).__name__, 200)
        message = f"the broker refused the reply ({size} bytes): {refusal}"
        too_large = getattr(exc, "reply_code", None) == PRECONDITION_FAILED and "size" in refusal
        error = PayloadTooLarge(message) if too_large else SpeechError(message)
        try:
            self._publish(props, encode_reply(error))
            return True
        except (ChannelClosedByBroker, NackError) as exc:
            log.warning("error reply to %s refused too (%s): dead-lettered", props.reply_to, exc)
            return False


def _reason(exc: BaseException) -> str:
    """What went wrong, in words: pika wraps a refused connection in two empty-looking errors."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    cause = getattr(cause, "exception", None) or cause  # pika's connector errors carry it
    return str(cause) or type(cause).__name__


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
    bridge = Bridge(client, args.concurrency or celeryconfig.bridge_concurrency)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: bridge.stop())
    status = bridge.run()
    log.info("bridge stopped")
    return status
