"""Models are loaded and warmed once per worker process, before its first request."""

import re
import time

import pytest

from producer import Client
from tests.helpers import DATA, Vhost, Worker, wait_for

pytestmark = pytest.mark.slow  # warms workers of every algorithm

CALLS = {
    "asr": lambda c: c.asr(DATA / "fox_rms.wav"),
    "vad": lambda c: c.vad(DATA / "fox_rms.wav"),
    "speaker": lambda c: c.speaker_embed(DATA / "fox_rms.wav"),
    "features": lambda c: c.features(DATA / "fox_rms.wav", include=["mfcc", "f0"]),
    "denoise": lambda c: c.denoise(DATA / "fox_rms.wav"),
}


@pytest.mark.parametrize("queue", CALLS)
def test_first_request_after_start_does_not_pay_the_model_load(
    own_vhost: Vhost, queue: str
) -> None:
    # Given a fresh worker of one process, started and warm, alone on a vhost of its own
    # (so no warm session worker can answer in its place)
    worker = Worker(own_vhost.url, queue, name=f"{queue}-fresh").start(timeout=180)
    try:
        worker.wait_warm(queue)
        warm_s = float(re.search(rf"warmed {queue} in ([\d.]+) s", worker.log()).group(1))
        # When it gets its first and then its next requests
        latencies = []
        with Client(own_vhost.url, timeout=60) as client:
            for _ in range(4):
                start = time.perf_counter()
                answer = CALLS[queue](client)
                latencies.append(time.perf_counter() - start)
                assert answer
        # (and this fresh worker is the one that answered them)
        wait_for(lambda: worker.log().count("outcome=success") == 4, 10, "its 4 task lines")
    finally:
        worker.stop()
    # Then the first costs about what the next ones cost: not the load it did at start
    first, steady = latencies[0], sorted(latencies[1:])[1]
    print(f"{queue}: warm-up {warm_s:.2f} s, first {first:.3f} s, then median {steady:.3f} s")
    assert first < 2 * steady + 0.25, (queue, warm_s, latencies)
