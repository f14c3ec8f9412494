"""Reply lanes: a thread-safe way to share one Celery app's `rpc://` results.

Celery keeps one result backend per thread, named after the thread's id. Thread ids are
reused once a thread ends, so a new thread can share a reply queue with a dead thread's
backend that still consumes from it, and replies go to the wrong consumer (celery#4480:
seen here as lost replies after a thread pool was replaced). A lane is one backend with a
reply queue of its own, named by a fresh uuid. A call borrows a lane, installs it as its
thread's backend for the call, and returns it; the number of lanes (reply queues and
connections) is bounded by the number of calls ever in flight at once.
"""

import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery


class Lanes:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        """Install a lane as this thread's result backend for the duration of one call."""
        try:
            backend = self._idle.get_nowait()
        except queue.Empty:
            backend = self._new()
        local = self.app._local
        local.backend, local.oid = backend, backend.oid
        try:
            yield backend
        finally:
            # Results that arrived for calls nobody waits for any more (timed out) are
            # kept by Celery forever; the lane is idle now, so they are all stale.
            backend._out_of_band.clear()
            del local.backend, local.oid
            self._idle.put(backend)

    def _new(self) -> Any:
        local = self.app._local
        local.oid = str(uuid.uuid4())
        backend = self.app._get_backend()
        assert backend.oid == local.oid  # the reply queue is named once, here
        # Celery declares the reply queue before every publish, a broker round trip each
        # time (auto-delete queues are never cached). Once the lane's consumer is up the
        # queue exists for as long as the lane lives, so declare only until then.
        declare_reply_queue = backend.on_task_call

        def on_task_call(producer: Any, task_id: str) -> None:
            if backend.result_consumer._consumer is None:
                declare_reply_queue(producer, task_id)

        backend.on_task_call = on_task_call
        with self._lock:
            self._all.append(backend)
        return backend

    def close(self) -> None:
        with self._lock:
            lanes, self._all = self._all, []
        for backend in lanes:
            consumer = backend.result_consumer
            if consumer._connection is not None:
                consumer.stop()

    def __len__(self) -> int:
        return len(self._all)
