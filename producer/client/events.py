"""The Client's task-sent events, off the call's path.

Flower learns which queue a task went to only from the producer's `task-sent` event.
Celery publishes that event through the producer that published the task, so with
publisher confirms every call waits for two confirms, the request's and the event's: a
whole broker round trip per call for a monitoring message. Here the Client publishes the
request alone (confirmed), and hands the event to one thread of its own that publishes it
on a connection without confirms. An event is best effort, as events always were (they
go to a fanout exchange and are dropped when nobody listens): while the broker is away
events are dropped, never waited for, and a call never fails because of one.

Events are sent in groups: the thread waits up to GROUP_SECONDS after the first event of
a group and publishes everything that arrived meanwhile as one message (a list of events
with routing key `task.multi`, which Celery's event receivers and Flower read like single
events). One wake-up and one publish per group instead of one per call: under load the
thread no longer competes with the callers for the interpreter on every call.
"""

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from producer.settings import settings

log = logging.getLogger("speech.events")
# What a call hands the thread: task, task id, queue, argsrepr, kwargsrepr, seconds until
# it expires, when it was sent
_Sent = tuple[str, str, str, str, str, float, float]

# Events waiting for the thread; past this many (the broker is slow or away) new ones
# are dropped rather than held.
MAX_PENDING = 10_000
# Pause after a failed publish before the thread connects again.
RECONNECT_PAUSE = 1.0
# Seconds the thread waits for an event before it checks whether the Client is closing.
POLL_SECONDS = 1.0
# Seconds a group of events collects after its first one: how late Flower may learn of a
# call's queue.
GROUP_SECONDS = 0.1
# Events per message at most.
GROUP_SIZE = 500


class SentEvents:
    """Publishes `task-sent` events for one Client, from one thread, without confirms."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._pending: queue.Queue[_Sent] = queue.Queue(MAX_PENDING)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.hostname = f"speech-producer@{socket.gethostname()}"
        self.dropped = 0
        self.published = 0

    def sent(
        self, task: str, task_id: str, queue_name: str, argsrepr: str, kwargsrepr: str,
        expires: float,
    ) -> None:  # fmt: skip
        """Record that `task_id` was published to `queue_name`; the event itself is built
        by the thread, off the call's path."""
        try:
            self._pending.put_nowait(
                (task, task_id, queue_name, argsrepr, kwargsrepr, expires, time.time())
            )
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="speech-sent-events", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._closing.set()
        thread = self._thread
        if thread is not None:
            thread.join(POLL_SECONDS + 5)

    def _run(self) -> None:
        while not self._closing.is_set():
            # Events are not worth a confirm: a connection of their own without them.
            conn = self.app.connection_for_write(transport_options={"confirm_publish": False})
            try:
                conn.ensure_connection(max_retries=1, interval_start=0)
                dispatcher = self.app.events.Dispatcher(
                    conn,
                    hostname=self.hostname,
                    enabled=True,
                    buffer_while_offline=False,
                    buffer_group=["task"],
                    buffer_limit=GROUP_SIZE,
                )
                dispatcher.pid = os.getpid()
                self._publish_until_error(dispatcher)
            except Exception as exc:  # broker away: drop what waits, connect again later
                log.debug("task-sent events paused: %r", exc)
                self._drop_pending()
                self._closing.wait(RECONNECT_PAUSE)
            finally:
                with contextlib.suppress(Exception):
                    conn.release()

    def _publish_until_error(self, dispatcher: Any) -> None:
        while not self._closing.is_set():
            try:
                first = self._pending.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            group = [first, *self._gather(time.monotonic() + GROUP_SECONDS)]
            for sent in group:
                dispatcher.send("task-sent", **_fields(*sent))
            dispatcher.flush(errors=False)
            self.published += len(group)

    def _gather(self, until: float) -> list[_Sent]:
        """The events that arrive before `until` (at most a group's worth)."""
        gathered: list[_Sent] = []
        while len(gathered) < GROUP_SIZE - 1:
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                gathered.append(self._pending.get(timeout=left))
            except queue.Empty:
                break
        return gathered

    def _drop_pending(self) -> None:
        while True:
            try:
                self._pending.get_nowait()
            except queue.Empty:
                return
            self.dropped += 1


def _fields(
    task: str, task_id: str, queue_name: str, argsrepr: str, kwargsrepr: str, expires: float,
    now: float,
) -> dict[str, Any]:  # fmt: skip
    """A task-sent event's fields, as Celery writes them."""
    return {
        "uuid": task_id,
        "root_id": task_id,
        "parent_id": None,
        "name": task,
        "args": argsrepr,
        "kwargs": kwargsrepr,
        "retries": 0,
        "eta": None,
        "expires": datetime.fromtimestamp(now + expires, tz=UTC).isoformat(),
        "queue": queue_name,
        "exchange": settings().exchange,
        "routing_key": queue_name,
        "timestamp": now,
    }
