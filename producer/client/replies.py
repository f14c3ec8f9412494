"""The Client's reply path: a Celery result backend that survives the loss of a broker node.

Celery's `rpc://` backend declares a durable reply queue per thread: it lives on one node,
so when that node dies the queue cannot be declared elsewhere (`home node ... is down`),
and Celery's result consumer gives up for good. It also names the queue after the thread,
which Python reuses (celery#4480).

Here one consumer thread per Client owns one connection and one reply queue that is
exclusive, non-durable and auto-deleted: it lives on the node the consumer is connected to
and dies with that connection. Callers register the task id they expect *before* they
publish, with the reply queue of the moment (`expect`). When the connection breaks, the
thread declares a fresh queue on whichever node answers, and every caller still waiting
on the old queue is woken with `ReplyPathLost`: its answer, if one comes, would go to a
queue that no longer exists. The Client then publishes the request again while the
caller's timeout allows (the algorithms are pure functions: running one twice is safe).
Replies for ids nobody waits for (late, or the second run of a republished request) are
dropped.

Workers need nothing special: Celery's `rpc://` on their side publishes each result to
the request's `reply_to` on the default exchange, correlated by task id.
"""

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp.exceptions import NotFound, ResourceLocked
from celery import Celery
from celery.backends.base import BaseBackend
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Consumer, Queue

from producer.brokers import address
from producer.errors import BrokerUnavailable, SpeechError, access_denied
from producer.topology import REPLY_QUEUE_PREFIX

if TYPE_CHECKING:
    from producer.client.links import Nodes, Publisher

log = logging.getLogger("speech.replies")

# Seconds the consumer thread blocks on its socket before it looks at its heartbeat
# and at whether the Client is closing.
POLL_SECONDS = 1.0
# Pause between reconnect attempts after every broker address failed.
RECONNECT_PAUSE = 0.5


class ReplyPathLost(SpeechError):
    """Raised when the reply queue a call was waiting on died with its connection."""


class _Left(ConnectionError):
    """The Client left the reply connection's node: its publishes found it silent, or the
    other nodes no longer see its reply queue."""


def seen_through(publisher: "Publisher", patience: float) -> Callable[[str], bool]:
    """`seen(queue)` for ReplyBackend.follow: whether the node the publishers use now
    knows the reply queue. No answer within `patience` counts as yes."""

    def seen(name: str) -> bool:
        def declare(conn: Any) -> bool:
            try:
                with conn.channel() as channel:
                    channel.queue_declare(name, passive=True)
            except ResourceLocked:  # exclusive to the reply connection: it is there
                return True
            except NotFound:
                return False
            return True

        try:
            return bool(publisher.run(declare, time.monotonic() + patience))
        except Exception:  # noqa: BLE001  (no answer: not a reason to leave)
            return True

    return seen


@dataclass
class _Waiter:
    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    meta: dict[str, Any] | None = None
    lost: bool = False


class ReplyBackend(BaseBackend):  # type: ignore[misc]
    """Result backend of a producer.Client's Celery app (`result_backend_thread_safe`)."""

    supports_native_join = False

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self._lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._queue_name: str | None = None
        self._generation = 0
        self._ready = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._last_error: BaseException | None = None
        # True while the last attempt found no broker node at all: calls fail at once
        # with BrokerUnavailable instead of waiting for a broker that is not there.
        self._unreachable = False
        self.dropped = 0  # replies that arrived for no waiting call
        self.reconnects = 0
        self._nodes: Nodes | None = None
        self._patience = 2.0
        self._url: str | None = None  # the node the consumer is connected to
        self._leave = threading.Event()  # set when the Client left that node (hard)
        self._doubt = threading.Event()  # set when it left it soft (a nack)
        self._seen: Callable[[str], bool] | None = None

    def follow(
        self, nodes: "Nodes", patience: float, seen: Callable[[str], bool] | None = None
    ) -> None:
        """Connect in the order of `nodes`; leave a node the publishers left hard, and one
        that stays silent for `patience` seconds and then does not answer.

        A node the publishers left soft (it nacked a publish: a quorum queue without a
        leader) is left only if `seen(reply queue)` says the other nodes no longer see
        the reply queue: cut off from them, the workers' answers could not reach it. While
        a queue elects a leader every node nacks, and a reply connection leaving each one
        in turn would lose the answers to every call in flight, each time."""
        self._nodes, self._patience, self._seen = nodes, patience, seen
        nodes.subscribe(self._node_left)

    def _node_left(self, url: str, soft: bool) -> None:
        if url == self._url:
            (self._doubt if soft else self._leave).set()

    # --- the calling side ---------------------------------------------------------------
    def expect(self, task_id: str, timeout: float) -> str:
        """Register a call about to be published; returns the reply queue to name in it.

        Waits at most `timeout` seconds for a reply queue (a connection to some node)."""
        with self._lock:
            name = self._wait_for_queue(timeout)
            self._waiters[task_id] = _Waiter(self._generation)
            return name

    def reply_to(self) -> str:
        """The reply queue for a plain `apply_async` in this thread (see ReplyApp)."""
        with self._lock:
            name = self._wait_for_queue(self.app.conf.broker_connection_timeout)
            self._local.given = (name, self._generation)
            return name

    def on_task_call(self, producer: Any, task_id: str) -> dict[str, Any]:
        # A plain `apply_async` (not through Client): register it with the reply queue
        # that reply_to() named in its message, even if that queue has died since.
        with self._lock:
            given = getattr(self._local, "given", None)
            if task_id not in self._waiters and given is not None:
                waiter = _Waiter(given[1])
                if given[0] != self._queue_name:
                    waiter.lost = True
                    waiter.done.set()
                self._waiters[task_id] = waiter
        return {}

    def _wait_for_queue(self, timeout: float) -> str:
        """The current reply queue's name; the caller holds the lock."""
        # Reconnecting to another node takes a moment; a broker that is gone is reported
        # within the connect timeout, not at the end of the caller's whole timeout.
        deadline = time.monotonic() + min(timeout, self.app.conf.broker_connection_timeout)
        self._start()
        while self._queue_name is None:
            left = deadline - time.monotonic()
            if denied := access_denied(self._last_error):
                raise denied  # the user may not have a reply queue: waiting cannot help
            if left <= 0 or self._closing.is_set() or self._unreachable:
                why = self._last_error or "no broker answered"
                raise BrokerUnavailable(f"no reply queue on any broker node: {why}")
            self._ready.wait(left)
        return self._queue_name

    def discard(self, task_id: str) -> None:
        """Forget a call: a reply that still comes for it is dropped."""
        with self._lock:
            self._waiters.pop(task_id, None)

    def wait_for(self, task_id: str, timeout: float | None = None, **_: Any) -> dict[str, Any]:
        """Block until the reply to `task_id` (Celery's AsyncResult.get ends up here)."""
        with self._lock:
            waiter = self._waiters.get(task_id)
        if waiter is None:
            raise RuntimeError(f"task {task_id} was not sent through this app, or was read")
        if not waiter.done.wait(timeout):
            raise CeleryTimeout(f"no reply to {task_id} within {timeout} s")
        self.discard(task_id)  # a reply is read once (AsyncResult caches it)
        if waiter.lost:
            raise ReplyPathLost(f"the reply queue of {task_id} died with its broker connection")
        if waiter.meta is None:  # done, not lost, yet no reply: a bug here, not the caller's
            raise RuntimeError(f"the wait for {task_id} ended without a reply")
        return waiter.meta

    # Results are messages read once by the caller: nothing is stored, nothing to forget.
    def _forget(self, task_id: str) -> None:
        self.discard(task_id)

    def as_uri(self, include_password: bool = True) -> str:
        return "replies://"

    # --- the consuming thread -------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closing.clear()
            self._thread = threading.Thread(target=self._run, name="speech-replies", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(POLL_SECONDS + 5)
        self._thread = None

    def _run(self) -> None:
        urls = self.app.conf.broker_read_url or self.app.conf.broker_url
        first = 0
        while not self._closing.is_set():
            # the Client's order of nodes (a node left goes last), or the list rotated
            url = ";".join(self._nodes.preferred()) if self._nodes else _rotate(urls, first)
            conn = self.app.connection_for_read(
                url=url,
                heartbeat=self.app.conf.broker_heartbeat or None,
            )
            try:
                # One attempt per address; kombu moves to the next one after each failure.
                try:
                    conn.ensure_connection(max_retries=len(_split(urls)), interval_start=0)
                except Exception:
                    self._set_unreachable(True)
                    raise
                self._set_unreachable(False)
                self._consume(conn)
            except Exception as exc:  # any way a connection can break: find another node
                self._lose_connection(exc)
                denied = access_denied(exc) is not None  # the user's rights, not the node's
                if self._nodes is not None and self._url and not (isinstance(exc, _Left) or denied):
                    self._nodes.leave(self._url, exc)
                first += 1
                self._closing.wait(RECONNECT_PAUSE)
                # no closing handshake with a node that may never answer it
                with contextlib.suppress(Exception):
                    conn.collect()
            else:
                _close(conn)
            self._url = None
        self._lose_connection(None)

    def _set_unreachable(self, unreachable: bool) -> None:
        with self._lock:
            self._unreachable = unreachable
            self._ready.notify_all()

    def _consume(self, conn: Any) -> None:
        name = f"{REPLY_QUEUE_PREFIX}{uuid.uuid4()}"
        queue = Queue(name, exclusive=True, auto_delete=True, durable=False)
        # Setting up (channel, declare, consume) ends within the connect timeout, even on a
        # node that hangs or waits for one that does
        conn.connection.transport.sock.settimeout(self.app.conf.broker_connection_timeout)
        channel = conn.channel()
        consumer = Consumer(
            channel, queues=[queue], no_ack=True, accept=self.accept, on_message=self._on_reply
        )
        consumer.consume()
        self._url = _node_url(conn, self._nodes)
        self._leave.clear()
        self._doubt.clear()
        checked = 0.0  # when the other nodes were last asked whether they see the queue
        with self._lock:
            self._queue_name, self._last_error = name, None
            self._generation += 1
            self._ready.notify_all()
        log.info("reply queue %s on %s", name, conn.as_uri())
        # Every blocking read of this connection ends within the patience (a probe's).
        conn.connection.transport.sock.settimeout(self._patience)
        raw = conn.connection
        heard, last_recv = time.monotonic(), raw.bytes_recv
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=POLL_SECONDS)
            conn.heartbeat_check()
            if self._leave.is_set():
                raise _Left(f"left {conn.as_uri()}: the Client's publishes found it silent")
            if self._doubt.is_set() and time.monotonic() - checked >= self._patience:
                self._doubt.clear()
                checked = time.monotonic()
                if self._seen is not None and not self._seen(name):
                    raise _Left(f"left {conn.as_uri()}: the other nodes no longer see {name}")
            if raw.bytes_recv != last_recv:
                heard, last_recv = time.monotonic(), raw.bytes_recv
            elif time.monotonic() - heard > self._patience:
                # Silent a while: ask the node something (a hung node never answers)
                channel.basic_qos(0, 0, False)
                heard, last_recv = time.monotonic(), raw.bytes_recv
        with contextlib.suppress(Exception):
            consumer.cancel()

    def _on_reply(self, message: Any) -> None:
        task_id = message.properties.get("correlation_id")
        with self._lock:
            waiter = self._waiters.get(task_id)
        if waiter is None:
            self.dropped += 1
            return
        waiter.meta = self.meta_from_decoded(message.decode())
        waiter.done.set()

    def _lose_connection(self, exc: BaseException | None) -> None:
        with self._lock:
            if exc is not None:
                self._last_error = exc
                self.reconnects += 1
                log.warning("reply connection lost (%r); reconnecting", exc)
                self._ready.notify_all()  # a caller waiting for a queue hears why
            self._queue_name = None
            for waiter in self._waiters.values():
                if waiter.generation == self._generation and not waiter.done.is_set():
                    waiter.lost = True
                    waiter.done.set()


class ReplyApp(Celery):  # type: ignore[misc]
    """A Celery app whose calls name the ReplyBackend's queue as their `reply_to`, so a
    plain `app.send_task(...).get(timeout)` works too (Celery names a per-thread queue),
    and publish through producer.client.publishing's shorter path."""

    amqp_cls = "producer.client.publishing:LeanAMQP"

    @property
    def thread_oid(self) -> str:
        backend = self.backend
        if isinstance(backend, ReplyBackend):
            return backend.reply_to()
        return str(super().thread_oid)


def _node_url(conn: Any, nodes: "Nodes | None") -> str | None:
    """Which of `nodes`' URLs `conn` is connected to."""
    if nodes is None:
        return None
    here = address(conn.as_uri())
    for url in nodes.preferred():
        if address(url) == here:
            return url
    return None


def _close(conn: Any) -> None:
    """Close politely within a second, else drop the connection."""
    try:
        if conn.connected:
            conn.connection.transport.sock.settimeout(1.0)
        conn.release()
    except Exception:  # noqa: BLE001  (a dead or hung node)
        with contextlib.suppress(Exception):
            conn.collect()


def _split(urls: str) -> list[str]:
    return [url for url in urls.split(";") if url.strip()]


def _rotate(urls: str, first: int) -> str:
    """The broker URL list starting at its `first` entry (modulo its length)."""
    parts = _split(urls)
    if len(parts) < 2:
        return urls
    first %= len(parts)
    return ";".join(parts[first:] + parts[:first])
