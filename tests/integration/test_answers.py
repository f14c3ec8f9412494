"""How workers send answers (tasks/answers.py), against the real broker: an answer that
reaches its reply queue, and one that no node can route, returned by the broker, offered
to the other nodes of the list (a dead one skipped after its first failure) and dropped,
with the answers after it delivered as before."""

import logging
import time
import uuid

import pytest
from celery import Celery
from celery.app.task import Context
from kombu import Connection, Consumer, Queue

import celeryconfig
from tasks import answers
from tests.helpers import Vhost


def _worker_app(urls: str) -> Celery:
    app = Celery("answers-test", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = urls
    app.conf.result_backend = "tasks.answers:AnswerBackend"
    return app


def test_an_answer_no_node_can_route_is_offered_to_the_others_then_dropped(
    own_vhost: Vhost, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker's backend whose broker list is the real broker, then a dead address
    dead = f"amqp://guest:guest@127.0.0.1:1/{own_vhost.name}"
    app = _worker_app(f"{own_vhost.url};{dead}")
    backend = app.backend
    assert isinstance(backend, answers.AnswerBackend)
    name, got = f"speech.reply.{uuid.uuid4()}", []

    def answer(reply_to: str, value: int) -> float:
        request = Context(id=str(uuid.uuid4()), reply_to=reply_to, correlation_id=None)
        start = time.monotonic()
        backend.store_result(request.id, {"v": value}, "SUCCESS", request=request)
        return time.monotonic() - start

    answers._away_until.clear()
    with Connection(own_vhost.url) as conn:
        queue = Queue(name, exclusive=True, auto_delete=True, durable=False)
        with Consumer(conn, [queue], on_message=got.append, accept=["msgpack"]):
            # When it answers a caller whose reply queue exists
            answer(name, 1)
            conn.drain_events(timeout=5)
            # Then the answer arrives
            assert [m.decode()["result"] for m in got] == [{"v": 1}]
            # When it answers a caller whose reply queue no node knows (the caller is gone)
            with caplog.at_level(logging.INFO, "speech.worker"):
                answer(f"speech.reply.{uuid.uuid4()}", 2)
                # (a second one, once the dead node is known to be away)
                second = answer(f"speech.reply.{uuid.uuid4()}", 3)
            # Then the broker returned it, the other node was tried, found dead, and
            # skipped the next time; both answers were dropped without an error
            said = [r.getMessage() for r in caplog.records]
            assert sum("unreachable" in s for s in said) == 1, said
            assert sum("was dropped: no node knows" in s for s in said) == 2, said
            assert second < answers.CONNECT_SECONDS, said
            # And the next answer arrives as before (no stale confirm taken for its own)
            answer(name, 4)
            conn.drain_events(timeout=5)
            assert [m.decode()["result"] for m in got] == [{"v": 1}, {"v": 4}]
    app.close()
