"""The broker drops every connection, or is flooded: callers get an answer or a clear
error within their timeout, never a hang; the queue never grows past its bound."""

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pika

from producer import Client, SpeechError
from tests.helpers import DATA, REPO, Vhost, Worker, rabbitmqctl, wait_for
from tests.reliability.conftest import record


def test_connection_loss_workers_and_producer_reconnect(own_vhost: Vhost) -> None:
    # Given a worker and a producer with calls going on in 8 threads
    worker = Worker(own_vhost.url, "asr", concurrency=2, name="reconnect").start()
    outcomes: list[tuple[str, float, float]] = []  # (outcome, seconds, ended at)
    stop = threading.Event()
    timeout = 8.0
    in_flight: dict[int, float] = {}  # thread -> when its current call started

    def keep_calling() -> None:
        with Client(own_vhost.url) as client:
            while not stop.is_set():
                start = in_flight[threading.get_ident()] = time.monotonic()
                try:
                    client.ping("asr", timeout=timeout)
                    outcome = "ok"
                except SpeechError as exc:
                    outcome = type(exc).__name__
                outcomes.append((outcome, time.monotonic() - start, time.monotonic()))
                time.sleep(0.01)

    def recovered_since(moment: float) -> bool:
        """100 calls answered since `moment`, and no call from before it still running."""
        answered = sum(1 for o, _, end in list(outcomes) if o == "ok" and end > moment)
        return answered >= 100 and min(in_flight.values()) > moment

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(keep_calling) for _ in range(8)]
            try:
                wait_for(lambda: len(in_flight) == 8 and recovered_since(0), 60, "100 calls")
                # When the broker closes every connection of the vhost, twice, each time
                # once calls are answered again
                for _ in range(2):
                    closed_at = time.monotonic()
                    rabbitmqctl("close_all_connections", "--vhost", own_vhost.name, "fault test")
                    wait_for(
                        lambda at=closed_at: recovered_since(at),
                        timeout + 20,
                        "100 calls answered after the connections were closed",
                    )
            finally:
                stop.set()
            for f in futures:
                f.result()
        outcomes[:] = sorted(outcomes, key=lambda o: o[2])
        # Then no call took longer than its timeout (plus connection set-up), none hung
        assert max(seconds for _, seconds, _ in outcomes) < timeout + 5
        # And the calls at the end succeed again: everyone reconnected
        assert [o for o, _, _ in outcomes[-16:]] == ["ok"] * 16
        assert worker.alive()
        with Client(own_vhost.url) as fresh:
            assert fresh.asr(DATA / "fox_kal16.wav", timeout=30)["text"]
        failed = [o for o, _, _ in outcomes if o != "ok"]
        record(
            "connection_loss",
            calls=len(outcomes),
            failed_with_clear_error=len(failed),
            errors=sorted(set(failed)),
            slowest_s=round(max(s for _, s, _ in outcomes), 2),
            hung=0,
        )
    finally:
        worker.stop()


# How far past x-max-length a quorum queue can go: one publish in flight per connection
# of the producer's pool (broker_pool_limit, Celery's default 10).
OVERSHOOT = 10

BURST = """
import sys, time, json
from concurrent.futures import ThreadPoolExecutor
from producer import Client, Overloaded
client = Client(sys.argv[1])
def call(i):
    start = time.monotonic()
    try:
        client.asr("tests/data/fox_kal16.wav", timeout=240)
        return ("ok", time.monotonic() - start)
    except Overloaded:
        return ("overloaded", time.monotonic() - start)
with ThreadPoolExecutor(100) as pool:
    print(json.dumps(list(pool.map(call, range(int(sys.argv[2]))))))
"""


def test_a_burst_of_ten_times_the_bound_is_shaved(own_vhost: Vhost) -> None:
    # Given an asr queue bounded at 10 requests and one slow worker
    bound = 10
    env = {"SPEECH_MAX_BACKLOG": str(bound)}
    worker = Worker(own_vhost.url, "asr", name="shaver", env=env).start()
    try:
        # When 100 calls arrive at once
        burst = subprocess.Popen(
            [sys.executable, "-c", BURST, own_vhost.url, str(bound * 10)],
            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        conn = pika.BlockingConnection(pika.URLParameters(own_vhost.url))
        channel = conn.channel()
        deepest = 0
        while burst.poll() is None:
            depth = channel.queue_declare("asr", passive=True).method.message_count
            deepest = max(deepest, depth)
            time.sleep(0.02)  # sampling the depth while the burst runs, not waiting
        conn.close()
        import json

        outcomes = json.loads(burst.stdout.read())  # type: ignore[union-attr]
        ok = [s for o, s in outcomes if o == "ok"]
        refused = [s for o, s in outcomes if o == "overloaded"]
        # Then the queue stayed at its bound: a quorum queue checks x-max-length as each
        # publish is applied, so publishes already in flight when it fills still land:
        # at most one per producer connection (measured: 3 to 4 over a bound of 10)
        assert deepest <= bound + OVERSHOOT
        # And accepted calls completed, the rest failed fast with Overloaded
        assert len(ok) + len(refused) == 100
        assert len(ok) >= bound and refused
        assert max(refused) < 5
        record(
            "overload",
            calls=100,
            bound=bound,
            completed=len(ok),
            overloaded=len(refused),
            deepest_queue=deepest,
            slowest_refusal_s=round(max(refused), 2),
        )
    finally:
        worker.stop()


def test_a_call_in_flight_survives_the_loss_of_its_reply_connection(own_vhost: Vhost) -> None:
    # Given one worker busy transcribing a long clip for a caller
    worker = Worker(own_vhost.url, "asr", name="inflight").start()
    long_clip = (DATA / "meeting_rms.wav").read_bytes()
    try:
        with Client(own_vhost.url) as client:
            expected = client.asr(long_clip, timeout=60)["text"]
            with ThreadPoolExecutor(1) as pool:
                call = pool.submit(client.asr, long_clip, timeout=60)
                wait_for(lambda: worker.log().count("] received") == 2, 10, "the second call")
                assert not call.done(), "the clip is too short to catch the call in flight"
                # When the broker drops every connection while the call is in flight
                rabbitmqctl("close_all_connections", "--vhost", own_vhost.name, "fault test")
                # Then the caller still gets its own answer: the Client noticed that its
                # reply queue died with the connection and published the request again
                assert call.result(timeout=90)["text"] == expected
            assert client.replies.reconnects >= 1
        assert worker.alive()
    finally:
        worker.stop()
