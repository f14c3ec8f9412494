"""The RPC contract itself: ping, timeouts, expiry, broker down, unknown queues."""

import time

import pytest

from producer import BrokerUnavailable, CallTimeout, Client, InvalidInput
from producer.client.replies import REPLY_QUEUE_PREFIX
from tests.helpers import DATA, Vhost, Worker, wait_for


def _reply_queues(vhost: Vhost) -> set[str]:
    return {q for q in vhost.queues() if q.startswith(REPLY_QUEUE_PREFIX)}


def test_ping_is_answered_by_a_worker_on_the_queue(client: Client, asr_worker: Worker) -> None:
    answer = client.ping("asr")
    assert answer["worker"] == "asr-session@" + answer["host"]
    assert 0 < answer["rtt"] < 5
    assert abs(answer["time"] - time.time()) < 5


def test_unknown_algorithm_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(InvalidInput, match="unknown algorithm 'nope'"):
        client.call("nope", b"x")
    with pytest.raises(InvalidInput, match="unknown algorithm .nope.: not installed here"):
        client.ping("nope")


def test_broker_unreachable_fails_within_seconds() -> None:
    with Client("amqp://guest:guest@127.0.0.1:1//") as dead:
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ"):
            dead.ping("asr", timeout=30)
        assert time.monotonic() - start < 10


@pytest.mark.slow
def test_timeout_leaves_no_work_behind(own_vhost: Vhost) -> None:
    # Given a vhost of its own whose asr queue nobody consumes yet
    with Client(own_vhost.url) as client:
        # When a call times out
        with pytest.raises(CallTimeout, match="no answer within 1 s"):
            client.asr(DATA / "fox_kal16.wav", timeout=1)
        # Then the request expired with the caller's timeout: the broker dropped it
        wait_for(lambda: own_vhost.queues()["asr"] == 0, 5, "the expired request to go")
        # And a worker that starts later never runs it
        worker = Worker(own_vhost.url, "asr", name="late").start()
        try:
            assert client.ping("asr", timeout=30)["worker"].startswith("late@")
            assert "speech.asr[" not in worker.log()
        finally:
            worker.stop()


def test_thread_pools_replaced_again_and_again_never_lose_a_reply(
    client: Client, asr_worker: Worker, vhost: Vhost
) -> None:
    # Given thread pools that end and are replaced: new threads reuse old thread ids,
    # which made Celery's per-thread reply queues collide (celery#4480)
    from concurrent.futures import ThreadPoolExecutor

    client.ping("asr", timeout=10)
    before = _reply_queues(vhost)
    assert len(before) >= 1
    for _ in range(4):
        # When 16 threads of a fresh pool call at once
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.ping("asr", timeout=10), range(64)))
        # Then every call is answered
        assert len(answers) == 64
    # And the Client still holds the one reply queue it had, whatever the threads seen
    assert _reply_queues(vhost) == before


def test_the_reply_queue_stays_on_a_node_that_nacked_while_the_others_see_it(
    broker_url: str, asr_worker: Worker
) -> None:
    # Given a Client whose reply queue stands (a call answered through it)
    with Client(broker_url) as client:
        assert client.ping("asr", timeout=10, echo=1)["echo"] == 1
        replies, url = client.replies, client.nodes.preferred()[0]
        name = replies._queue_name
        assert name is not None and replies._seen is not None
        # (the node the publishers use sees it, and knows no queue of a made-up name)
        assert replies._seen(name) and not replies._seen(f"{name}-not-there")
        # When its node nacks a publish (left soft), while the queue is seen
        client.nodes.leave(url, "nacked a publish", soft=True)
        time.sleep(2 * replies._patience + 1)  # past the thread's next look
        # Then the reply connection stays, and answers come through the same queue
        assert (replies._queue_name, replies.reconnects) == (name, 0)
        assert client.ping("asr", timeout=10, echo=2)["echo"] == 2
        # When the node nacks again but no longer seems to see the queue (cut off)
        replies._seen = lambda queue: False
        client.nodes.leave(url, "nacked a publish", soft=True)
        # Then the reply connection moves (here: a fresh one, with a fresh queue)
        wait_for(lambda: replies.reconnects == 1, 10, "the reply connection to move")
        assert client.ping("asr", timeout=10, echo=3)["echo"] == 3
        assert replies._queue_name not in (None, name)
        # And a node left hard is left without asking
        moved = replies._queue_name
        client.nodes.leave(url, "no confirm")
        wait_for(lambda: replies.reconnects == 2, 10, "the reply connection to move")
        assert client.ping("asr", timeout=10, echo=4)["echo"] == 4
        assert replies._queue_name != moved
