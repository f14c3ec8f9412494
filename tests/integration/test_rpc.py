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
