"""How a worker sends its answers: Celery's `rpc://`, made to notice an answer it lost.

Celery publishes each answer to the caller's reply queue (`reply_to`) on the default
exchange, from the pool process that ran the task, over that process's own connection.
When that connection breaks, kombu reconnects to the next node of the broker list, and
during a partition that can be a node cut off from the others that has not paused yet
(RabbitMQ 3.10 goes on taking connections for ~8 s after it decides to pause). That node
does not know a reply queue declared on the other side since the cut, where the callers
went: it drops the answer as unroutable and still confirms it, or takes it and answers
nothing, and the answers the worker sends until that node closes its connections are lost
without a word, or wait with the worker.

So an answer not confirmed within twice SPEECH_NODE_PATIENCE (4 s), or refused, is sent
again through the next node of the list (kombu alone would reconnect to the same node), for
as long as it takes: a resource alarm that blocks publishers delays it, never drops it.
And answers go out with `mandatory`: RabbitMQ returns one it cannot route (NO_ROUTE)
before it confirms it. The answer is then offered, over a connection of its own, to the
other nodes of the list in turn, until one takes it or also returns it. A return from a
second node means no node knows the queue: the caller is gone (it closed, or its reply
queue moved with its connection after the call gave up), and the answer is dropped, as
Celery would. A node that does not take a connection within a second is skipped for
`AWAY_SECONDS`, so a dead node costs one attempt, not one per answer.

A reply queue declared before the cut on the majority's side is still known to the
cut-off node (until it notices its peers are gone), which routes the answer towards a node
it cannot reach: no return, and no confirm either, so the confirm's bound moves it on.
"""

import logging
import time
from typing import Any

from amqp import spec
from amqp.exceptions import AMQPError, ChannelError
from celery.backends.rpc import RPCBackend
from kombu import Producer
from kombu.exceptions import OperationalError

from producer.brokers import address, broker_urls, safe_url
from producer.settings import settings

log = logging.getLogger("speech.worker")

NO_ROUTE = 312  # AMQP's reply code for a mandatory message that matched no queue
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
CONNECT_SECONDS = 1.0  # to offer an answer to another node
AWAY_SECONDS = 30.0  # a node that did not take that connection is skipped this long
RETRY_PAUSE = 0.2  # between two attempts to publish an answer
_away_until: dict[str, float] = {}  # per pool process


def _returned(exc: BaseException) -> bool:
    return isinstance(exc, ChannelError) and getattr(exc, "reply_code", None) == NO_ROUTE


class AnswerBackend(RPCBackend):  # type: ignore[misc]
    """Celery's rpc:// result backend, publishing with `mandatory` (see the module)."""

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        routing_key, correlation_id = self.destination_for(task_id, request)
        if not routing_key:
            return None
        body = self._to_result(task_id, state, result, traceback, request)
        message = {
            "exchange": self.exchange,
            "routing_key": routing_key,
            "correlation_id": correlation_id,
            "serializer": self.serializer,
            "delivery_mode": self.delivery_mode,
            # (RabbitMQ counts a message to a direct reply-to name as not routed, and would
            # return it: those go out as Celery sends them)
            "mandatory": not routing_key.startswith(DIRECT_REPLY_TO),
        }
        with self.app.amqp.producer_pool.acquire(block=True) as producer:
            here = self._publish(producer, task_id, body, message)
            if here is None:
                return result
        for url in self._others(here):
            try:
                if self._offer(url, body, message):
                    log.warning(
                        "the answer to %s went through %s: %s:%s did not know reply queue %r",
                        task_id, safe_url(url), *here, routing_key,
                    )  # fmt: skip
                    return result
                break  # returned there too: nobody waits for it
            except (OSError, AMQPError, OperationalError) as exc:
                _away_until[url] = time.monotonic() + AWAY_SECONDS
                log.info("answer to %s: node %s unreachable (%r)", task_id, safe_url(url), exc)
        log.warning(
            "the answer to %s was dropped: no node knows reply queue %r (its caller is gone)",
            task_id, routing_key,
        )  # fmt: skip
        return result

    def _publish(
        self, producer: Any, task_id: str, body: Any, message: dict[str, Any]
    ) -> tuple[str, int] | None:
        """Publish until a node confirms the answer (None) or returns it (its address).

        An answer not confirmed within twice SPEECH_NODE_PATIENCE, or refused, goes again
        through the next node (kombu's own retry would reconnect to the same node first),
        as long as it takes: a resource alarm or a broker down delays it, never drops it."""
        confirm = 2 * settings().node_patience
        while True:
            connection = producer.connection
            retryable = (
                OperationalError,
                *connection.recoverable_connection_errors,
                *connection.recoverable_channel_errors,
            )
            try:
                producer.publish(body, confirm_timeout=confirm, **message)
                return None
            except retryable as exc:
                log.info("answer to %s: %r; publishing through the next node", task_id, exc)
                connection.collect()
                connection.maybe_switch_next()
                producer.revive(connection)
                time.sleep(RETRY_PAUSE)
            except ChannelError as exc:
                if not _returned(exc):
                    raise
                here = address(connection.as_uri())
                _settle(producer)
                return here

    def _others(self, here: tuple[str, int]) -> list[str]:
        """The broker's other nodes, in the list's order, without those away."""
        now = time.monotonic()
        urls = broker_urls(self.app.conf.broker_write_url or self.app.conf.broker_url)
        return [url for url in urls if address(url) != here and _away_until.get(url, 0.0) <= now]

    def _offer(self, url: str, body: Any, message: dict[str, Any]) -> bool:
        """Publish through `url` on a connection of its own: False if it is returned."""
        with self.app.connection_for_write(url, connect_timeout=CONNECT_SECONDS) as conn:
            conn.ensure_connection(max_retries=0)  # one attempt
            conn.connection.transport.sock.settimeout(CONNECT_SECONDS * 5)
            try:
                Producer(conn).publish(body, **message)
            except ChannelError as exc:
                if _returned(exc):
                    return False
                raise
        return True


def _settle(producer: Any) -> None:
    """Read the confirm RabbitMQ sends after the return, so that the next publish on this
    connection does not take it for its own; drop the connection if it does not come."""
    try:
        producer.channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=CONNECT_SECONDS)
    except Exception:  # noqa: BLE001  (no confirm in time: a fresh connection next time)
        producer.connection.collect()
