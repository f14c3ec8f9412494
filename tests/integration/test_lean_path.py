"""The Client's lean call path: task-sent events published apart from the calls and in
groups, queues declared once per Client rather than per publish, task messages published
by producer.client.publishing as Celery would send them."""

import threading
import time
from typing import Any

import pika
import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.serialization import dumps

import celeryconfig
from producer import CallTimeout, Client
from producer.client import publishing
from producer.client.publishing import LeanAMQP
from tests.helpers import Vhost, Worker, wait_for


@pytest.fixture
def serialised(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The bodies the lean path serialised (Celery's own path serialises elsewhere)."""
    bodies: list[object] = []
    monkeypatch.setattr(
        publishing, "dumps", lambda body, **kw: bodies.append(body) or dumps(body, **kw)
    )
    return bodies


def test_the_task_sent_event_names_the_queue_and_the_task(own_vhost: Vhost) -> None:
    # Given a listener on Celery's event exchange (what Flower reads)
    with Connection(own_vhost.url) as conn:
        events = Queue("test.events", Exchange("celeryev", type="topic"), "task.#", exclusive=True)
        listener = conn.SimpleQueue(events, serializer="json")
        # When a call is sent to a queue nobody serves yet
        with Client(own_vhost.url) as client:
            with pytest.raises(CallTimeout):
                client.ping("vad", timeout=0.5, echo="x")
            # Then one task-sent event says which task went to which queue; events come in
            # groups (a list per message), as Celery's receivers and Flower read them
            message = listener.get(timeout=10)
            assert message.delivery_info["routing_key"] == "task.multi"
            [event] = message.payload
            message.ack()
        listener.close()
    assert event["type"] == "task-sent"
    assert event["name"] == "speech.ping"
    assert event["queue"] == event["routing_key"] == "vad"
    assert event["kwargs"] == "{'echo': 'x'}"
    assert event["uuid"] and event["expires"] and abs(event["timestamp"] - time.time()) < 60


def test_a_call_made_before_any_worker_waits_in_its_queue(own_vhost: Vhost) -> None:
    # Given a Client on a broker where no worker ever declared the asr queue
    answers: list[Any] = []
    with Client(own_vhost.url) as client:
        # When a call is made, and only then a worker starts
        caller = threading.Thread(target=lambda: answers.append(client.ping("asr", timeout=60)))
        caller.start()
        wait_for(lambda: own_vhost.queues().get("asr") == 1, 20, "the request queued")
        worker = Worker(own_vhost.url, "asr", name="late").start()
        try:
            caller.join(60)
        finally:
            worker.stop()
    # Then the request waited in its queue and was answered
    assert answers and answers[0]["worker"].startswith("late@")


def test_the_events_of_many_calls_travel_in_a_few_messages(own_vhost: Vhost) -> None:
    # Given a listener on the event exchange and a worker
    worker = Worker(own_vhost.url, "asr", name="grouped").start()
    try:
        with Connection(own_vhost.url) as conn:
            events = Queue("test.events", Exchange("celeryev", type="topic"), "task.#")
            listener = conn.SimpleQueue(events, serializer="json")
            # When 60 calls are made one after another
            with Client(own_vhost.url) as client:
                client.ping("asr", timeout=60)
                for i in range(60):
                    client.ping("asr", echo=i)
                sent = {f"{{'echo': {i}}}" for i in range(60)}
                # Then every call's task-sent event arrives, grouped into a few messages
                seen: set[str] = set()
                messages = 0
                while not sent <= seen:
                    message = listener.get(timeout=10)
                    messages += 1
                    seen |= {event["kwargs"] for event in message.payload}
                    message.ack()
            listener.close()
    finally:
        worker.stop()
    assert messages < 20, f"{messages} messages for 61 events: not grouped"


def test_the_lean_publish_sends_the_message_celery_would(
    own_vhost: Vhost, serialised: list[object]
) -> None:
    # Given the Client's app (producer.client.publishing.LeanAMQP) and a plain Celery app

    plain = Celery("plain", set_as_current=False)
    plain.config_from_object(celeryconfig)
    plain.conf.broker_url = plain.conf.broker_read_url = plain.conf.broker_write_url = own_vhost.url
    with Client(own_vhost.url) as client:
        assert isinstance(client.app.amqp, LeanAMQP)
        client._declare_topology()
        # When each sends the same task to a queue nobody serves
        sent = {}
        for name, app in (("lean", client.app), ("celery", plain)):
            app.send_task(
                "speech.ping", kwargs={"echo": "x"}, queue="vad", task_id=f"t-{name}",
                reply_to="nobody", expires=30, declare=[], ignore_result=True,
            )  # fmt: skip
            sent[name] = _take(own_vhost.url, "vad")
    plain.close()
    # Then the Client's went the short way, Celery's its own
    assert len(serialised) == 1
    # And the two messages differ only in their ids and clocks
    lean, full = sent["lean"], sent["celery"]
    assert lean["body"] == full["body"]
    for key in ("id", "root_id", "expires"):
        assert lean["headers"].pop(key) and full["headers"].pop(key)
    assert lean["headers"] == full["headers"]
    for props in (lean["properties"], full["properties"]):
        assert props.pop("correlation_id") and 29_000 <= int(props.pop("expiration")) <= 30_000
    assert lean["properties"] == full["properties"]
    assert lean["properties"]["delivery_mode"] == 2
    assert lean["properties"]["content_type"] == "application/x-msgpack"


def test_calls_take_the_lean_path_also_beside_the_registered_tasks(
    own_vhost: Vhost, serialised: list[object]
) -> None:
    # Given a process that also imported the workers' tasks: they add their own defaults
    # (serializer, ...) to every call of the same name
    import tasks  # noqa: F401

    with Client(own_vhost.url) as client:
        assert client.app.tasks.get("speech.asr") is not None
        # When the Client calls asr (nobody serves it in this vhost)
        with pytest.raises(CallTimeout):
            client.asr(b"RIFF", timeout=0.5)
    # Then the request still went the short way (bounded by the call's deadline)
    assert len(serialised) == 1


def _take(url: str, queue: str) -> dict[str, Any]:
    """The next message in `queue`, as the broker holds it."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method, props, body = conn.channel().basic_get(queue, auto_ack=True)
        assert method is not None, f"nothing in {queue}"
        properties = {k: v for k, v in vars(props).items() if v is not None and k != "headers"}
        return {"headers": dict(props.headers), "properties": properties, "body": body}
    finally:
        conn.close()
