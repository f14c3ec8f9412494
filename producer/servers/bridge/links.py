"""The bridge's connections to RabbitMQ: pika's parameters for one broker URL, and the
connection replies are published on, apart from the one requests are consumed on."""

import contextlib
import logging
import urllib.parse
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPConnectionError, AMQPError, ConnectionClosedByBroker
from pika.spec import BasicProperties

from producer import tls
from producer.brokers import virtual_host
from producer.settings import settings

log = logging.getLogger("speech.bridge")
REPLY_PROPERTIES = {"content_type": "application/msgpack"}
# How the bridge's connections are named in RabbitMQ's management UI and rabbitmqctl.
CONNECTION_NAME = "speech-bridge"
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
            log.info("reply connection lost (%s): reopened on the next reply", reason(exc))
            self.close()

    def close(self) -> None:
        conn, self.connection, self.channel = self.connection, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(AMQPError):
                conn.close()


def reason(exc: BaseException, url: str = "") -> str:
    """What went wrong, in words: pika wraps a refused connection in two empty-looking errors."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    cause = getattr(cause, "exception", None) or cause  # pika's connector errors carry it
    explained = tls.explain(cause, url) if url else None
    return explained or str(cause) or type(cause).__name__
