"""The Client's lean call path: task-sent events published apart from the calls, queues
declared once per Client rather than per publish."""

import threading
import time
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from producer import CallTimeout, Client
from tests.helpers import Vhost, Worker, wait_for


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
