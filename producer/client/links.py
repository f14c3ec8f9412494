"""The Client's links to RabbitMQ for publishing: bounded in time, off a node that hangs.

kombu's connection pool and its `ensure` retry wrapper serve workers well, but a caller
with a deadline meets two grey failures there that never end:
- a resource alarm (memory, disk): RabbitMQ stops reading from every publishing
  connection, so after a confirm that never comes, kombu's recovery closes the channel
  and waits for a `close-ok` that never comes either;
- a node that hangs (a frozen VM, a stalled disk, a dead switch port): its sockets stay
  open and nothing answers, so nothing fails until TCP gives up, minutes later.

Here each link is one py-amqp connection with one confirm channel, used by one thread at
a time, and every socket operation on it is bounded by the caller's deadline. A link that
fails in any way is dropped without a closing handshake (nothing to wait for), never put
back. What a link can tell:
- RabbitMQ's `connection.blocked` notification (with the alarm it names) makes the call
  fail at once with BrokerBlocked; later calls fail at once too, without publishing, until
  the same connection hears `connection.unblocked`;
- a publish not confirmed within `node_patience` seconds makes the link ask its node a
  question: it opens a second channel (answered by a new channel process), then asks its
  own channel (basic.qos). No answer on the new channel means the node hangs; answers on
  both but still no confirm after another `node_patience` means the node cannot reach its
  queue's leader (a node cut off from the cluster's majority). Either way the node goes to
  the back of the list (`Nodes.leave`) and the request is published again on the next
  node while the deadline allows (it may then run twice; the algorithms are pure
  functions, and the second answer finds nobody waiting);
- a node that answers on the new channel while the link's own channel does not is alive:
  its channel is held by RabbitMQ's quorum-queue client (see `Link.probe`), and the link
  waits for the confirm or nack that RabbitMQ then sends, until the deadline, without
  leaving a node that is about to serve.
"""

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import amqp
import amqp.transport
from amqp import spec
from amqp.exceptions import AccessRefused, AMQPError, ConnectionError, MessageNacked, NotAllowed
from kombu.transport import pyamqp
from kombu.utils.url import parse_url

from producer.brokers import AMQPS_PORT, broker_urls, safe_url
from producer.errors import (
    AccessDenied,
    BrokerBlocked,
    BrokerUnavailable,
    SpeechError,
    access_denied,
)
from producer.tls import explain, server_hostname

log = logging.getLogger("speech.links")
# Idle links kept for reuse, all threads together: more are closed when given back.
MAX_IDLE = 16
# A blocked link is asked whether the alarm cleared at most this often (seconds).
BLOCKED_POLL = 0.2
# A node found dead or hung is tried after every other node for this long (seconds): a
# cut-off node goes on taking connections until it pauses, ~15 s with the shipped settings.
AWAY_SECONDS = 30.0


class PublishLate(SpeechError):
    """Raised when the deadline passed before RabbitMQ confirmed a publish."""


class NodeSilent(SpeechError):
    """Raised when a link's node stopped answering, or cannot confirm publishes."""


class Nodes:
    """The broker's addresses in the order to try them.

    A node found dead, hung or refusing connections is left *hard*: it goes behind every
    other node for `AWAY_SECONDS`, so that nodes that merely nacked (a quorum queue electing
    a leader) are tried before it again. A node that nacked a publish to a queue that is not
    full is left *soft*: it goes to the back among the nodes not left hard. Everyone
    listening is told, with which of the two it was: the publishers drop their idle links
    to the node either way; the Client's reply thread leaves a node left hard, and one left
    soft only if the other nodes no longer see its reply queue (producer/client/replies.py)."""

    def __init__(self, urls: str | Iterable[str]) -> None:
        self._urls = broker_urls(urls)
        if not self._urls:
            raise BrokerUnavailable("no broker URL configured (CELERY_BROKER_URL)")
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, bool], None]] = []
        self._away_until: dict[str, float] = {}
        self.left = 0  # times a node was left

    def preferred(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            away = {u: t for u, t in self._away_until.items() if t > now}
            back = sorted(away, key=away.__getitem__)  # the longest away first
            return [u for u in self._urls if u not in away] + back

    def subscribe(self, listener: Callable[[str, bool], None]) -> None:
        """`listener(url, soft)` hears of every node left."""
        self._listeners.append(listener)

    def leave(self, url: str, why: object, *, quiet: bool = False, soft: bool = False) -> None:
        """Move `url` back (see the class); `quiet`: a refused connection, logged at INFO
        (the caller's error, if every node refuses, says it all)."""
        with self._lock:
            if url not in self._urls:
                return
            self._urls.remove(url)
            self._urls.append(url)
            if not soft:
                self._away_until[url] = time.monotonic() + AWAY_SECONDS
            self.left += 1
            loud = len(self._urls) > 1 and not quiet
        log.log(logging.WARNING if loud else logging.INFO, "leaving RabbitMQ node %s: %s",
                safe_url(url), why)  # fmt: skip
        for listener in self._listeners:
            listener(url, soft)


class _Connection(pyamqp.Connection):  # type: ignore[misc]
    """kombu's py-amqp connection (its channels take kombu's entities), keeping the reason
    RabbitMQ gives with `connection.blocked` (py-amqp reads the method without it)."""

    _METHODS = {
        **amqp.Connection._METHODS,
        spec.Connection.Blocked: spec.method(spec.Connection.Blocked, "s"),
    }

    handshake_deadline: float | None = None

    def _on_blocked(self, reason: str = "") -> None:
        if self.on_blocked:
            self.on_blocked(reason or "no reason given")

    def drain_events(self, timeout: float | None = None) -> None:
        # py-amqp gives each frame of the handshake the whole connect timeout: the
        # handshake as a whole must end by the caller's deadline
        if not self._handshake_complete and self.handshake_deadline is not None:
            left = max(0.01, self.handshake_deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        super().drain_events(timeout=timeout)

    # TLS with the platform's SSLContext (producer/tls.py) and the URL's host name
    tls_context: ssl.SSLContext | None = None
    tls_hostname: str = ""

    def Transport(  # noqa: N802  (py-amqp's name)
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        **kw: Any,
    ) -> Any:
        timeouts = {"read_timeout": read_timeout, "write_timeout": write_timeout}
        if self.tls_context is None:
            return super().Transport(host, connect_timeout, ssl, **timeouts, **kw)
        return _ContextTransport(
            host, self.tls_context, self.tls_hostname, connect_timeout, **timeouts, **kw
        )


class _ContextTransport(amqp.transport.SSLTransport):  # type: ignore[misc]
    """py-amqp's TLS transport wrapping its socket with a given SSLContext (by itself it
    builds one from a dict of options, and cannot take a context)."""

    def __init__(
        self, host: str, context: ssl.SSLContext, hostname: str, connect_timeout: Any, **kw: Any
    ) -> None:
        self.context, self.hostname = context, hostname
        super().__init__(host, connect_timeout=connect_timeout, **kw)

    def _wrap_socket(self, sock: socket.socket, **_: Any) -> ssl.SSLSocket:
        return self.context.wrap_socket(
            sock, server_hostname=self.hostname, do_handshake_on_connect=False
        )


class Link:
    """One connection to one node, with one confirm channel; one thread at a time."""

    def __init__(
        self,
        url: str,
        deadline: float,
        connect_timeout: float,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.blocked: str | None = None
        self._confirmed = 0  # highest delivery tag acked or nacked
        self._nacked = 0
        self._sent = 0
        u = parse_url(url)
        host = u.get("hostname") or "localhost"
        port = u.get("port") or (AMQPS_PORT if tls_context is not None else 5672)
        self.conn = _Connection(
            host=f"{'127.0.0.1' if host == 'localhost' else host}:{port}",
            userid=u.get("userid") or "guest",
            password=u.get("password") or "guest",
            virtual_host=u.get("virtual_host") or "/",
            connect_timeout=max(0.05, min(connect_timeout, _left(deadline))),
            heartbeat=0,  # a link is either in use (bounded) or idle (checked before use)
            on_blocked=self._on_blocked,
            on_unblocked=self._on_unblocked,
        )
        self.conn.handshake_deadline = deadline
        self.conn.tls_context, self.conn.tls_hostname = tls_context, server_hostname(url)
        try:
            self.conn.connect()
            self._bound(deadline)
            self.channel = self.conn.channel()
            self.channel.confirm_select()
        except BaseException:
            self.abandon()
            raise
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    # --- what the broker tells -----------------------------------------------------------
    def _on_blocked(self, reason: str) -> None:
        self.blocked = reason

    def _on_unblocked(self) -> None:
        self.blocked = None

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._confirmed = max(self._confirmed, tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._confirmed = max(self._confirmed, tag)
        self._nacked = max(self._nacked, tag)

    # --- operations ----------------------------------------------------------------------
    def _bound(self, deadline: float) -> None:
        """Every blocking read and write on this link ends by `deadline`."""
        self.conn.transport.sock.settimeout(max(0.01, _left(deadline)))

    def poll(self) -> None:
        """Read whatever the broker sent meanwhile (blocked, unblocked, a close), at once."""
        with contextlib.suppress(socket.timeout):
            self.conn.drain_events(timeout=0)

    def publish(
        self, message: amqp.Message, routing_key: str, deadline: float, patience: float,
        exchange: str = "",
    ) -> None:  # fmt: skip
        """Publish (on the default exchange unless one is named) and wait for the confirm."""
        self._bound(deadline)
        self.poll()
        if self.blocked is not None:
            raise BrokerBlocked(self.blocked)
        self._sent += 1
        tag = self._sent
        self.channel._basic_publish(message, exchange=exchange, routing_key=routing_key)
        self._await(tag, deadline, patience)
        if self._nacked >= tag:
            raise MessageNacked(f"RabbitMQ refused the publish to {routing_key!r}")

    def _await(self, tag: int, deadline: float, patience: float) -> None:
        until = min(deadline, time.monotonic() + patience)
        probed = False
        while self._confirmed < tag:
            if self.blocked is not None:
                raise BrokerBlocked(self.blocked)
            left = until - time.monotonic()
            if left <= 0:
                if _left(deadline) <= 0:
                    raise PublishLate("no confirm from RabbitMQ before the call's deadline")
                if probed:
                    raise NodeSilent(f"no confirm within {2 * patience:g} s (node cut off?)")
                held = not self.probe(min(deadline, time.monotonic() + patience))
                probed = True
                # a held channel ends with a confirm or a nack: wait for it (see probe)
                until = deadline if held else min(deadline, time.monotonic() + patience)
                continue
            with contextlib.suppress(socket.timeout):
                self.conn.drain_events(timeout=left)

    def probe(self, deadline: float) -> bool:
        """Ask the node a question; NodeSilent if no answer comes by `deadline`.

        True if the link's channel answered too; False if only the node did. A fresh
        channel is answered by a channel process of its own, so it tells whether the node
        lives, whatever holds the link's channel. What holds it, on a live node, is
        RabbitMQ's quorum-queue client (rabbit_fifo_client, 3.10): a channel's first publish
        to a quorum queue is synchronous inside the channel process, an rpc to the node
        of the leader the queue record names (a lost node: until the connection attempt to
        it fails, net_setuptime, 7 s) and then `register_enqueuer`, which a follower holds
        until a new leader is elected (at most net_ticktime + 5 s). Meanwhile the channel
        answers nothing, and then confirms, or nacks the publish. Every link a Client
        opens on another node after its node hangs or is cut off is in that state until
        the cluster has elected new leaders: taking it for a hung node would leave the
        node that is about to serve, for 30 s, and send the Client back to the lost one.
        """
        bound = _left(deadline)
        self._bound(deadline)
        try:
            # channel.open and close: answered by a channel process of their own
            self.conn.channel().close()
        except (OSError, AMQPError) as exc:
            if self.blocked is not None:
                raise BrokerBlocked(self.blocked) from None
            raise NodeSilent(f"no answer within {bound:.1f} s ({exc!r})") from exc
        try:
            self.channel.basic_qos(0, 0, False)
        except (OSError, AMQPError) as exc:
            if self.blocked is not None:
                raise BrokerBlocked(self.blocked) from None
            log.info("RabbitMQ node %s answers, its channel waits for a queue: %r",
                     safe_url(self.url), exc)  # fmt: skip
            return False
        return True

    def abandon(self) -> None:
        """Drop the connection without a closing handshake: nothing to wait for."""
        with contextlib.suppress(Exception):
            self.conn.collect()

    def close(self, timeout: float = 1.0) -> None:
        """A polite close, bounded; dropped if the broker does not answer in time."""
        if self.conn._transport is None:  # dropped already (py-amqp would reconnect)
            return
        try:
            self._bound(time.monotonic() + timeout)
            self.conn.close()
        except Exception:  # noqa: BLE001  (a dead or blocked node: just drop it)
            self.abandon()


class Publisher:
    """Links to the broker's nodes, shared by the Client's threads."""

    def __init__(
        self, nodes: Nodes, *, connect_timeout: float, patience: float,
        tls_context: ssl.SSLContext | None = None, max_links: int = 10,
    ) -> None:  # fmt: skip
        self.nodes, self.connect_timeout, self.patience, self.tls_context = (
            nodes, connect_timeout, patience, tls_context,
        )  # fmt: skip
        # Links in use at once, all threads together (Celery's broker_pool_limit): a burst
        # of callers waits its turn within its deadline instead of opening a connection
        # each, and a full queue overshoots its bound by at most one publish per link.
        self._slots = threading.BoundedSemaphore(max_links)
        self._idle: list[Link] = []
        self._lock = threading.Lock()
        self._blocked: Link | None = None
        self._blocked_lock = threading.Lock()
        self._checked_blocked = 0.0
        self._closed = False
        nodes.subscribe(self._drop_idle_on)

    # --- calls ---------------------------------------------------------------------------
    def publish(
        self, message: amqp.Message, routing_key: str, deadline: float, exchange: str = ""
    ) -> None:
        """Publish once confirmed, moving to another node if this one stops answering.

        Raises BrokerBlocked, BrokerUnavailable, PublishLate, MessageNacked or AccessDenied."""
        with self._slot(deadline):
            self._publish(message, routing_key, deadline, exchange)

    def _publish(
        self, message: amqp.Message, routing_key: str, deadline: float, exchange: str
    ) -> None:
        while True:
            self._check_blocked()
            link = self._take(deadline)
            try:
                link.publish(message, routing_key, deadline, self.patience, exchange)
            except BrokerBlocked:
                self._hold_blocked(link)
                raise
            except MessageNacked as exc:
                self._give(link)
                exc.node_url = link.url  # the Client may leave a node that nacks
                raise
            except PublishLate:
                link.abandon()
                raise
            except AccessRefused as exc:  # the user's rights: another node will say the same
                link.abandon()
                raise _denied(exc) from None
            except (NodeSilent, OSError, AMQPError) as exc:
                link.abandon()
                self.nodes.leave(link.url, exc)
                if _left(deadline) <= 0:
                    raise PublishLate(f"no confirm from RabbitMQ in time: {exc}") from None
                continue
            self._give(link)
            return

    def run(self, operation: Callable[[amqp.Connection], Any], deadline: float) -> Any:
        """`operation(connection)` on a link (declarations, passive checks), bounded by
        `deadline`; the link is dropped if anything goes wrong."""
        with self._slot(deadline):
            return self._run(operation, deadline)

    def _run(self, operation: Callable[[amqp.Connection], Any], deadline: float) -> Any:
        link = self._take(deadline)
        try:
            link._bound(deadline)
            result = operation(link.conn)
        except (OSError, ConnectionError) as exc:  # the node, not the operation, failed
            link.abandon()
            self.nodes.leave(link.url, exc)
            raise
        except AccessRefused as exc:
            link.abandon()
            raise _denied(exc) from None
        except BaseException:
            link.abandon()
            raise
        self._give(link)
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._blocked is not None:
            idle.append(self._blocked)
            self._blocked = None
        for link in idle:
            link.close()

    # --- links ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _slot(self, deadline: float) -> Iterator[None]:
        if not self._slots.acquire(timeout=_left(deadline)):
            raise PublishLate("every link to RabbitMQ was busy until the call's deadline")
        try:
            yield
        finally:
            self._slots.release()

    def _take(self, deadline: float) -> Link:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        errors: list[str] = []
        for url in self.nodes.preferred():
            if _left(deadline) <= 0:
                break
            try:
                return Link(url, deadline, self.connect_timeout, self.tls_context)
            except (AccessRefused, NotAllowed) as exc:  # a login or a vhost refused
                raise _denied(exc) from None
            except (OSError, AMQPError) as exc:
                errors.append(f"{safe_url(url)} ({explain(exc, url) or exc})")
                self.nodes.leave(url, exc, quiet=isinstance(exc, ConnectionRefusedError))
        if not errors:
            raise BrokerUnavailable("cannot reach RabbitMQ before the call's deadline")
        raise BrokerUnavailable(
            f"cannot reach RabbitMQ at {', '.join(errors)}: check CELERY_BROKER_URL and the network"
        )

    def _give(self, link: Link) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(link)
                return
        link.close()

    def _drop_idle_on(self, url: str, soft: bool) -> None:
        # (soft too: the next publish there starts on a fresh channel)
        with self._lock:
            dropped = [link for link in self._idle if link.url == url]
            self._idle = [link for link in self._idle if link.url != url]
        for link in dropped:
            link.abandon()

    # --- resource alarms -----------------------------------------------------------------
    def _hold_blocked(self, link: Link) -> None:
        """Keep a blocked link: it is the one that will hear `connection.unblocked`."""
        with self._blocked_lock:
            if self._blocked is None:
                self._blocked = link
                log.warning("RabbitMQ blocks publishers: %s", link.blocked)
                return
        link.abandon()

    def _check_blocked(self) -> None:
        """BrokerBlocked at once while the alarm lasts; nothing once it cleared."""
        with self._blocked_lock:
            link = self._blocked
            if link is None:
                return
            if time.monotonic() - self._checked_blocked >= BLOCKED_POLL:
                self._checked_blocked = time.monotonic()
                try:
                    link._bound(time.monotonic() + 1.0)
                    link.poll()
                except Exception:  # noqa: BLE001  (its node died meanwhile: start afresh)
                    link.blocked = None
            reason = link.blocked
            if reason is None:
                self._blocked = None
                log.warning("RabbitMQ unblocked publishers")
        if reason is not None:
            raise BrokerBlocked(reason)
        # its unconfirmed publish will be confirmed now: a fresh link is simpler
        link.abandon()


def _denied(exc: BaseException) -> BaseException:
    """AccessDenied for RabbitMQ's 403 (or a vhost's 530); anything else unchanged."""
    found: AccessDenied | None = access_denied(exc)
    return found if found is not None else exc


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
