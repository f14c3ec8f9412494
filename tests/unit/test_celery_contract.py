"""The Celery hooks the Client's reply path builds on (producer/client/replies.py), checked
without a broker, so a Celery upgrade that changes one fails here, by name.

The path uses documented extension points (a result backend named by
`module:Class`, `result_backend_thread_safe`) and relies on three behaviours of them.
"""

import inspect

import celery
from celery.app.base import Celery
from celery.backends.base import BaseBackend
from celery.result import AsyncResult

from producer import Client
from producer.client.replies import ReplyApp, ReplyBackend, _Waiter

NO_BROKER = "amqp://guest:guest@127.0.0.1:1//"


def test_send_task_names_the_apps_reply_queue_and_tells_the_backend() -> None:
    source = inspect.getsource(Celery.send_task)
    # ReplyApp.thread_oid names the reply queue of a plain app.send_task(...)
    assert isinstance(inspect.getattr_static(Celery, "thread_oid"), property), (
        f"Celery {celery.__version__}: Celery.thread_oid is no longer a property"
    )
    assert "reply_to or self.thread_oid" in source, (
        f"Celery {celery.__version__}: send_task no longer takes reply_to from thread_oid"
    )
    # ReplyBackend.on_task_call registers such calls before they are published
    assert "self.backend.on_task_call(P, task_id)" in source, (
        f"Celery {celery.__version__}: send_task no longer calls backend.on_task_call"
    )
    assert "thread_oid" in vars(ReplyApp)


def test_async_result_get_ends_in_the_backends_wait_for() -> None:
    # Given a Client (nothing connected) whose backend already holds a reply
    client = Client(NO_BROKER)
    backend = client.app.backend
    assert isinstance(backend, ReplyBackend) and client.app.conf.result_backend_thread_safe
    waiter = _Waiter(generation=0)
    waiter.meta = {"status": "SUCCESS", "result": {"ok": 1}, "task_id": "t1"}
    waiter.done.set()
    backend._waiters["t1"] = waiter
    # When Celery's public AsyncResult.get asks for it
    result = AsyncResult("t1", app=client.app).get(timeout=1)
    # Then it went through ReplyBackend.wait_for (the reply is read once)
    assert result == {"ok": 1}, (
        f"Celery {celery.__version__}: AsyncResult.get no longer reaches backend.wait_for"
    )
    assert "t1" not in backend._waiters
    client.close()


def test_the_backend_api_the_reply_path_overrides_still_exists() -> None:
    for name in ("wait_for", "meta_from_decoded", "on_task_call", "_forget", "as_uri"):
        assert callable(getattr(BaseBackend, name, None)), (
            f"Celery {celery.__version__}: BaseBackend.{name} is gone"
        )
    assert "self.wait_for(" in inspect.getsource(BaseBackend.wait_for_pending)
