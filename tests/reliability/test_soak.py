"""No fault at all: tens of thousands of calls through one Client, every one answered with
its own answer; memory bounded; nothing left behind on the broker.

SPEECH_SOAK_CALLS sets the size (default 50,000: about two minutes here)."""

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil

from producer import Client, SpeechError
from producer.client.replies import REPLY_QUEUE_PREFIX
from tests.helpers import DATA, Vhost, Worker, rabbitmqctl, wait_for
from tests.reliability.conftest import record

CALLS = int(os.environ.get("SPEECH_SOAK_CALLS", "50000"))
THREADS = 8
ASR_EVERY = 250  # every 250th call transcribes; the rest are pings (the messaging path)
CLIPS = ["fox_kal16.wav", "weather_awb.wav", "numbers_rms.wav"]
PING_TIMEOUT = 10.0


def _rss_mb(worker: Worker) -> float:
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20


def _reply_queues(vhost: Vhost) -> list[str]:
    return [q for q in vhost.queues() if q.startswith(REPLY_QUEUE_PREFIX)]


def _unacked(vhost: Vhost) -> dict[str, int]:
    out = rabbitmqctl("list_queues", "-p", vhost.name, "name", "messages_unacknowledged")
    rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
    return {name: int(n) for name, n in rows if n.isdigit() and int(n)}


def test_soak_every_call_answered_with_its_own_answer(own_vhost: Vhost) -> None:
    # Given two asr workers and one Client shared by 8 threads
    workers = [Worker(own_vhost.url, "asr", name=f"soak{i}").start() for i in range(2)]
    clips = {name: (DATA / name).read_bytes() for name in CLIPS}
    try:
        with Client(own_vhost.url) as client:
            # asr is deterministic: each clip's reference is its own first transcript
            expected = {name: client.asr(data, timeout=120)["text"] for name, data in clips.items()}

            def call(i: int) -> tuple[str, float]:
                start = time.monotonic()
                try:
                    if i % ASR_EVERY == 0:
                        name = CLIPS[(i // ASR_EVERY) % len(CLIPS)]
                        right = client.asr(clips[name], timeout=120)["text"] == expected[name]
                    else:
                        right = client.ping("asr", timeout=PING_TIMEOUT, echo=i)["echo"] == i
                    outcome = "ok" if right else "wrong answer"
                except SpeechError as exc:
                    outcome = type(exc).__name__
                return outcome, time.monotonic() - start

            # When CALLS calls are made, the first 2,000 as a warm-up for the memory check
            with ThreadPoolExecutor(THREADS) as pool:
                warm = list(pool.map(call, range(2000)))
                rss_warm = [_rss_mb(w) for w in workers]
                started = time.monotonic()
                rest = list(pool.map(call, range(2000, CALLS)))
                seconds = time.monotonic() - started
            rss_end = [_rss_mb(w) for w in workers]
            outcomes = Counter(o for o, _ in warm + rest)
            slowest = max(s for _, s in warm + rest)
            # Then every call got its own answer, none failed and none hung
            assert outcomes == {"ok": CALLS}, outcomes
            assert slowest < 60, slowest
            # And the Client held one reply queue throughout
            assert len(_reply_queues(own_vhost)) == 1
        # And nothing is left behind: no request waiting or unacked, nothing dead-lettered,
        # no reply queue once the Client is closed
        # (the broker's queue statistics lag by a few seconds: poll them)
        wait_for(
            lambda: own_vhost.queues().get("asr") == 0 and not _unacked(own_vhost),
            30,
            lambda: f"asr drained: {own_vhost.queues()}, unacked {_unacked(own_vhost)}",
            1,
        )
        queues, unacked = own_vhost.queues(), _unacked(own_vhost)
        assert queues.get("asr") == 0 and queues.get("speech.dead", 0) == 0, queues
        assert unacked == {}
        assert _reply_queues(own_vhost) == []
        # And worker memory stays bounded after warm-up
        growth = max(end - start for start, end in zip(rss_warm, rss_end, strict=True))
        assert growth < 40, (rss_warm, rss_end)
        record(
            "soak",
            calls=CALLS,
            threads=THREADS,
            answered_correctly=outcomes["ok"],
            failed=CALLS - outcomes["ok"],
            lost=0,
            calls_per_s=round((CALLS - 2000) / seconds),
            slowest_s=round(slowest, 2),
            worker_rss_mb_after_warmup=[round(x) for x in rss_warm],
            worker_rss_mb_at_end=[round(x) for x in rss_end],
        )
    finally:
        for w in workers:
            w.stop()
