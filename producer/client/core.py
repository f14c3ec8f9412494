"""The producer library: call speech algorithms over RabbitMQ with RPC semantics.

Each call publishes one Celery task to the algorithm's queue and waits for the answer on
the Client's reply queue with `apply_async(...).get(timeout)`, correlated by task id. The
reply queue belongs to one connection and is replaced when that connection breaks (see
producer/client/replies.py), so a Client survives the loss of a broker node and can be shared
by many threads.
"""

import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from amqp.exceptions import ConnectionError as AMQPConnectionError
from amqp.exceptions import MessageNacked, NotFound
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu import Producer, Queue
from kombu.exceptions import EncodeError, OperationalError

import producer.celeryconf
from producer.algorithms.arrays import unpack_all
from producer.algorithms.catalog import Catalog, catalog
from producer.algorithms.declare import NAME, task_name
from producer.algorithms.learnt import known
from producer.algorithms.options import check_timeout
from producer.client.describe import args_repr, kwargs_repr
from producer.client.events import SentEvents
from producer.client.links import Nodes, Publisher, PublishLate
from producer.client.replies import ReplyApp, ReplyBackend, ReplyPathLost, seen_through
from producer.client.transcribe import Audio, transcribe
from producer.errors import (
    AccessDenied,
    BrokerUnavailable,
    CallTimeout,
    InvalidInput,
    InvalidOptions,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
    SpeechError,
)
from producer.settings import settings
from producer.tls import broker_use_ssl, context
from producer.topology import algorithm_queue, declare_algorithm_queues, declare_dead_letters

log = logging.getLogger("speech.client")
# A call whose reply path died is published again only if at least this many seconds
# of its timeout are left.
MIN_ATTEMPT_SECONDS = 0.05
# First pause before publishing again after a nack on a queue that is not full.
NACK_PAUSE = 0.1
# "kws" or "kws.spot": how an algorithm this Client has no declaration of may be named
REMOTE_NAME = re.compile(rf"{NAME.pattern[:-1]}(\.{NAME.pattern[1:-1]})?$")


class Client:
    """A connection to the platform; safe to share across threads.

    >>> with Client() as client:
    ...     client.asr("hello.wav")["text"]
    """

    def __init__(self, broker_url: str | None = None, *, timeout: float | None = None):
        self.app = ReplyApp("speech-producer", set_as_current=False)
        self.app.config_from_object(producer.celeryconf)
        if broker_url:
            self.app.conf.broker_url = broker_url
            # Celery prefers a CELERY_BROKER_URL environment variable to conf.broker_url
            # (`make test` exports one); the read/write URLs win over it.
            self.app.conf.broker_read_url = self.app.conf.broker_write_url = broker_url
        # A caller must hear "broker down" within seconds: bound kombu's connection retries
        # (its default keeps retrying for the whole connect timeout, then retries publishes).
        self.app.conf.broker_transport_options = {
            **self.app.conf.broker_transport_options,
            "max_retries": 2,
            "interval_start": 0.5,
            "interval_step": 0.5,
            "interval_max": 1.0,
        }
        # Calls publish on links of their own, bounded by each call's deadline and moved
        # off a node that hangs (producer/client/links.py); the reply thread follows the same
        # order of nodes and leaves a node the publishers found silent, and vice versa.
        conf = self.app.conf
        urls = conf.broker_write_url or conf.broker_url
        # TLS follows the URLs this Client uses (an explicit broker_url may differ from
        # CELERY_BROKER_URL): kombu's connections take the options, the links the context.
        conf.broker_use_ssl = broker_use_ssl(settings(), urls)
        self.nodes = Nodes(urls)
        self.publisher = Publisher(
            self.nodes,
            connect_timeout=conf.broker_connection_timeout,
            patience=settings().node_patience,
            tls_context=context(settings()) if conf.broker_use_ssl else None,
            max_links=conf.broker_pool_limit or 10,
        )
        self.app.publisher = self.publisher
        # Celery acquires a producer for every call; the lean path never connects it, so
        # one idle producer serves every thread (no pool to wait for).
        self._producer = Producer(self.app.connection_for_write(), auto_declare=False)
        self._producer.shared_idle = True  # producer.client.publishing never publishes on it
        # One reply backend for all threads: its reply queue outlives no connection.
        self.app.conf.result_backend = f"{ReplyBackend.__module__}:{ReplyBackend.__name__}"
        self.app.conf.result_backend_thread_safe = True
        self.replies: ReplyBackend = self.app.backend
        patience = settings().node_patience
        self.replies.follow(self.nodes, patience, seen_through(self.publisher, patience))
        # Celery would publish task-sent events through the task's producer, waiting for a
        # second confirm per call: a thread of the Client's own does (producer/client/events.py).
        self.app.conf.task_send_sent_event = False
        self.events = SentEvents(self.app) if settings().sent_events else None
        self._declared = threading.Event()
        self._declare_lock = threading.Lock()
        self.timeout = settings().default_timeout if timeout is None else timeout
        self.max_payload_bytes: int = settings().max_payload_bytes
        # The algorithms declared in this environment (built-ins and installed plugins)
        self.catalog: Catalog = catalog()
        self.algorithms: tuple[str, ...] = self.catalog.names
        # "asr", "speaker.embed", ...: the operations `call` checks before sending
        self.operations: dict[str, str] = {
            key: algorithm.name for key, (algorithm, _) in self.catalog.operations.items()
        }
        # Queues of algorithms not declared here that the broker has (found on first call)
        self._remote_queues: dict[str, Queue] = {}

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.replies.close()
        self.publisher.close()
        self.app.close()

    # --- calls -------------------------------------------------------------------------
    def call(
        self,
        algorithm: str,
        audio: Audio | list[Audio] | tuple[Audio, ...],
        /,
        timeout: float | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Run `algorithm` (or `algorithm.operation`) on `audio`: a path or bytes, or a
        list of them for operations that take several clips (speaker.verify).

        Options are checked against the algorithm's declaration before anything is sent.
        An algorithm that is not installed here is still called when the broker has its
        queue: its worker checks the options. Numeric arrays in the result come back as
        numpy arrays.
        """
        audios = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        return self._call_audio(algorithm, audios, timeout, options)

    def asr(self, audio: Audio, timeout: float | None = None) -> dict[str, Any]:
        """Transcribe speech: {"text", "words": [{"word", "start", "end"}...], "duration"}."""
        return self.call("asr", audio, timeout)

    def vad(self, audio: Audio, timeout: float | None = None, **options: Any) -> dict[str, Any]:
        """Speech segments: {"segments": [{"start", "end"}...], "duration", "speech"} (seconds).

        Options: threshold (0.5), min_speech (0.25 s), min_silence (0.3 s), pad (0.05 s).
        """
        return self.call("vad", audio, timeout, **options)

    def speaker_embed(self, audio: Audio, timeout: float | None = None) -> dict[str, Any]:
        """The speaker's voice as {"embedding": 256 float32 (L2-normalised), "speech", ...}."""
        return self.call("speaker.embed", audio, timeout)

    def speaker_verify(
        self, a: Audio, b: Audio, timeout: float | None = None, threshold: float | None = None
    ) -> dict[str, Any]:
        """Whether two clips hold the same voice: {"score" (cosine), "same", "threshold"}."""
        options = {} if threshold is None else {"threshold": threshold}
        return self._call_audio("speaker.verify", [a, b], timeout, options)

    def features(
        self, audio: Audio, timeout: float | None = None, **options: Any
    ) -> dict[str, Any]:
        """Frame-wise features as numpy arrays, with their frame `times`.

        Options: include (any of "mfcc", "logmel", "f0", "rms"; default mfcc and rms),
        n_mfcc (13), n_mels (64), hop (160 samples at 16 kHz).
        """
        return self.call("features", audio, timeout, **options)

    def denoise(self, audio: Audio, timeout: float | None = None, **options: Any) -> dict[str, Any]:
        """Cleaned audio: {"audio": WAV or FLAC bytes, "sample_rate", "removed_dbfs", ...}.

        Options: format ("wav" or "flac"), stationary (False), prop_decrease (1.0).
        """
        return self.call("denoise", audio, timeout, **options)

    def transcribe(
        self, audio: Audio, timeout: float | None = None, **options: Any
    ) -> dict[str, Any]:
        """Transcribe a long recording: vad, then its speech segments through asr in parallel.

        Returns {"text", "words", "segments", "duration"} with every time on the recording's
        clock. Needs numpy and soundfile on this host. See producer.client.transcribe.transcribe.
        """
        return transcribe(self, audio, timeout=timeout, **options)

    def ping(
        self, queue: str, timeout: float = 5.0, *, echo: str | int | None = None
    ) -> dict[str, Any]:
        """Check that `queue` is served: who answered, and the round trip in seconds.

        `echo` (a string or an integer) comes back in the answer as given."""
        if queue not in self.algorithms:
            self._check_remote(queue, queue)
        start = time.perf_counter()
        kwargs = {} if echo is None else {"echo": echo}
        answer = self._rpc("speech.ping", queue, [], kwargs, timeout)
        return {**answer, "rtt": time.perf_counter() - start}

    def queue_of(self, operation: str) -> str:
        """The queue that serves `operation`: declared here, or a queue the broker has (a
        plugin installed on the workers only); InvalidInput naming the known ones if none."""
        if self.catalog.operation(operation) is not None:
            return self.operations[operation]
        return self._check_remote(operation, operation.split(".", 1)[0])

    # --- plumbing ------------------------------------------------------------------------
    def _call_audio(
        self, operation: str, audios: list[Audio], timeout: float | None, options: dict[str, Any]
    ) -> dict[str, Any]:
        declared = self.catalog.operation(operation)
        if declared is None:
            queue = self.queue_of(operation)
            # Learnt from its workers (producer.algorithms.learnt), when a door asked them
            declared = known().operation(operation)
        else:
            queue = self.operations[operation]
        if declared is not None:
            if len(audios) != declared.clips:
                raise InvalidInput(f"{operation} takes {_clips(declared.clips)}, got {len(audios)}")
            # Sent as given (typed): the worker owns the defaults.
            checked = declared.validate(operation, options)
            options = {name: checked[name] for name in options}
        payloads = [self.read_audio(audio) for audio in audios]
        return unpack_all(self._rpc(task_name(operation), queue, payloads, options, timeout))

    def _check_remote(self, operation: str, queue: str) -> str:
        """`queue`, when the broker has it although no algorithm here declares it (a plugin
        installed on the workers only); InvalidInput otherwise."""
        if queue in self._remote_queues:
            return queue
        known = ", ".join(self.operations)
        if queue in self.catalog.algorithms:
            named = [key for key, name in self.operations.items() if name == queue]
            raise InvalidInput(
                f"{queue} has several operations: name one of {', '.join(named)}"
                if operation == queue
                else f"unknown operation {operation[:80]!r}; {queue}'s are {', '.join(named)}"
            )
        if not REMOTE_NAME.match(operation) or self._backlog(queue) < 0:
            raise InvalidInput(
                f"unknown algorithm {operation[:80]!r}: not installed here and no queue of that"
                f" name on the broker; known: {known}"
            )
        self._remote_queues[queue] = algorithm_queue(queue)
        return queue

    def read_audio(self, audio: Audio) -> bytes:
        """The bytes to send, checked against the payload limit before anything is sent."""
        if isinstance(audio, (bytes, bytearray, memoryview)):
            data = bytes(audio)
        elif isinstance(audio, (str, os.PathLike)):
            path = Path(audio)
            if not path.is_file():
                raise InvalidInput(f"no such audio file: {path}")
            self._check_size(path.stat().st_size, str(path))
            data = path.read_bytes()
        else:
            raise InvalidInput(f"audio must be a file path or bytes, got {type(audio).__name__}")
        if not data:
            raise InvalidInput("audio is empty (0 bytes)")
        self._check_size(len(data), "audio")
        return data

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"{what} is {size} bytes, the maximum payload is {self.max_payload_bytes}"
                " (SPEECH_MAX_PAYLOAD_BYTES)"
            )

    def _rpc(
        self,
        task: str,
        queue: str,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        timeout = self.timeout if timeout is None else timeout
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        self._declare_topology(deadline)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._publish_and_wait(task, queue, args, kwargs, deadline, timeout)
            except ReplyPathLost:
                # The answer would go to a queue that died with its broker node. The
                # algorithms are pure functions, so asking again is safe; only the
                # caller's timeout bounds it.
                if deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
                    raise CallTimeout(
                        f"{task} on queue {queue!r}: the broker connection carrying the reply"
                        f" was lost and {timeout:g} s ran out before a retry could finish"
                    ) from None
                log.info("%s: reply path lost, publishing again (attempt %d)", task, attempt + 1)

    def _publish_and_wait(
        self,
        task: str,
        queue: str,
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        timeout: float,
    ) -> Any:
        task_id = str(uuid.uuid4())
        reply_to = self.replies.expect(task_id, _left(deadline))
        try:
            result = self._publish(task, queue, args, kwargs, task_id, reply_to, deadline)
            try:
                return result.get(timeout=_left(deadline))
            except CeleryTimeout:
                raise CallTimeout(
                    f"{task} on queue {queue!r} gave no answer within {timeout:g} s"
                    f" (is a worker consuming it? `python -m producer ping {queue}`)"
                ) from None
            except TaskRevokedError:
                # The request expired unrun: it waited in the queue past the caller's timeout.
                raise CallTimeout(
                    f"{task} on queue {queue!r} expired in the queue before a worker took it"
                    f" ({timeout:g} s)"
                    " (too few workers for the load? `python -m producer status`)"
                ) from None
            except SpeechError:
                raise
            except (OperationalError, ConnectionError) as exc:
                raise BrokerUnavailable(f"lost RabbitMQ at {self._where()}: {exc}") from exc
            except Exception as exc:  # the remote algorithm's own error, rebuilt by Celery
                raise RemoteError(type(exc).__name__, str(exc)) from exc
        finally:
            self.replies.discard(task_id)

    def _publish(
        self,
        task: str,
        queue: str,
        args: list[Any],
        kwargs: dict[str, Any],
        task_id: str,
        reply_to: str,
        deadline: float,
    ) -> Any:
        """Publish once the broker confirms it; a refusal is retried unless the queue is full."""
        pause = NACK_PAUSE
        while True:
            try:
                # The request expires with the caller's patience: workers skip it unrun if
                # it is still queued when nobody waits for the answer any more.
                # argsrepr/kwargsrepr: events (Flower) show "<WAV 88 kB>", never the audio.
                argsrepr, kwargsrepr = args_repr(args), kwargs_repr(kwargs)
                expires = _left(deadline)
                result = self.app.signature(task, args=args, kwargs=kwargs).apply_async(
                    queue=self._remote_queues.get(queue, queue),
                    task_id=task_id,
                    reply_to=reply_to,
                    expires=expires,
                    # a publish waits for its confirm no longer than the caller waits
                    confirm_timeout=max(expires, 0.001),
                    argsrepr=argsrepr,
                    kwargsrepr=kwargsrepr,
                    # the queues were declared once, with the topology (_declare_topology)
                    declare=[],
                    producer=self._producer,
                )
                if self.events is not None:
                    self.events.sent(task, task_id, queue, argsrepr, kwargsrepr, expires)
                return result
            except EncodeError as exc:  # e.g. an integer beyond msgpack's 64 bits
                raise InvalidOptions(f"{task}: options that cannot be sent: {exc}") from None
            except PublishLate as exc:
                raise CallTimeout(
                    f"{task} on queue {queue!r}: RabbitMQ did not take the request within"
                    f" the call's timeout ({exc})"
                ) from None
            except (MessageNacked, OperationalError, OSError) as exc:
                nack = _nack(exc)
                if nack is None:
                    raise BrokerUnavailable(
                        f"cannot reach RabbitMQ at {self._where()}: {exc}"
                    ) from exc
                # A nack means a full queue (reject-publish) or a queue without a leader
                # (a quorum queue electing one after a node died): ask which.
                if self._backlog(queue) >= max(0, settings().max_backlog - 1):
                    raise Overloaded(
                        f"queue {queue!r} is full ({settings().max_backlog} requests waiting,"
                        " SPEECH_MAX_BACKLOG): retry later, or add workers"
                    ) from None
                if _left(deadline) < pause:
                    raise BrokerUnavailable(
                        f"RabbitMQ refused every publish to queue {queue!r} although it is not"
                        " full: is a broker node down and the queue without a leader?"
                    ) from None
                # The node that nacked may be cut off from the queue's majority: try another
                nacked_on = getattr(nack, "node_url", None)
                if nacked_on is not None:
                    self.nodes.leave(
                        nacked_on, f"nacked a publish to {queue!r}, not full", soft=True
                    )
                log.info("%s: publish to %r nacked, queue not full; retrying", task, queue)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def queue_state(self, queue: str) -> tuple[int, int] | None:
        """(messages waiting, consumers) of `queue`, None if the broker has no such queue;
        asked within the connect timeout (BrokerUnavailable, CallTimeout otherwise)."""

        def declare(conn: Any) -> tuple[int, int] | None:
            try:
                with conn.channel() as channel:
                    ok = channel.queue_declare(queue, passive=True)
                    return int(ok.message_count), int(ok.consumer_count)
            except NotFound:
                return None

        deadline = time.monotonic() + self.app.conf.broker_connection_timeout
        try:
            return self.publisher.run(declare, deadline)  # type: ignore[no-any-return]
        except (OSError, AMQPConnectionError, PublishLate) as exc:
            raise CallTimeout(f"RabbitMQ did not say how {queue!r} stands: {exc}") from None

    def _backlog(self, queue: str) -> int:
        """Messages waiting in `queue`, or -1 when the broker cannot say right now."""
        try:
            state = self.queue_state(queue)
        except Exception:  # no leader, no node: "not known to be full"
            return -1
        return -1 if state is None else state[0]

    def _declare_topology(self, by: float | None = None) -> None:
        """Declare the queues once per Client, by the deadline `by` if one is given."""
        if self._declared.is_set():
            return
        with self._declare_lock:
            if self._declared.is_set():
                return

            def declare(conn: Any) -> None:
                declare_dead_letters(conn)
                declare_algorithm_queues(conn, self.algorithms)

            def declared_elsewhere(denied: AccessDenied) -> None:
                # A least-privilege user (producer.permissions) declares no queue: the
                # workers and `producer permissions --apply` do, and calls publish to them.
                log.info("queues not declared here (%s): the workers declare them", denied)
                self._declared.set()

            # A node that is down or hung is left for the next (producer/client/links.py).
            wait = self.app.conf.broker_connection_timeout
            deadline = time.monotonic() + 2 * wait if by is None else by
            while True:
                try:
                    self.publisher.run(declare, min(deadline, time.monotonic() + wait))
                    break
                except AccessDenied as denied:
                    return declared_elsewhere(denied)
                except (OSError, AMQPConnectionError, PublishLate) as exc:
                    if time.monotonic() >= deadline:
                        raise BrokerUnavailable(
                            f"cannot declare the queues on RabbitMQ at {self._where()}: {exc}"
                        ) from exc
            self._declared.set()

    def _where(self) -> str:
        return self.app.connection_for_write().as_uri()


def _clips(n: int) -> str:
    return {1: "one clip", 2: "two clips"}.get(n, f"{n} clips")


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _nack(exc: BaseException | None) -> MessageNacked | None:
    """The broker's nack behind `exc` (a full queue with reject-publish, or a queue without
    a leader it can reach), if any: kombu sometimes wraps it in its own OperationalError.
    producer.client.links names the node that nacked (`node_url`)."""
    while exc is not None:
        if isinstance(exc, MessageNacked):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
