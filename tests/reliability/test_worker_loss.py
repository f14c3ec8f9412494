"""A worker dies or is stopped while requests are in flight: nothing is lost."""

import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from producer import Client
from tests.helpers import DATA, TRANSCRIPTS, Vhost, Worker, wait_for
from tests.reliability.conftest import record

CLIPS = sorted(TRANSCRIPTS)


def _expected(client: Client) -> dict[str, str]:
    return {name: client.asr(DATA / name, timeout=60)["text"] for name in CLIPS}


def _received_ids(worker: Worker) -> set[str]:
    return set(re.findall(r"speech\.asr\[([0-9a-f-]+)\] received", worker.log()))


def test_kill_9_one_of_two_workers_with_40_calls_in_flight(own_vhost: Vhost) -> None:
    # Given two asr workers sharing one queue
    a = Worker(own_vhost.url, "asr", name="victim").start()
    b = Worker(own_vhost.url, "asr", name="survivor").start()
    try:
        with Client(own_vhost.url) as client:
            expected = _expected(client)
            calls = [CLIPS[i % len(CLIPS)] for i in range(40)]
            # When 40 calls are in flight and one worker is killed with SIGKILL
            with ThreadPoolExecutor(40) as pool:
                futures = [pool.submit(client.asr, DATA / n, 180) for n in calls]
                wait_for(lambda: len(_received_ids(a)) >= 3, 60, "3 calls at the victim")
                a.signal(signal.SIGKILL)
                results = [f.result() for f in futures]
            # Then every caller got the right transcript
            assert [r["text"] for r in results] == [expected[n] for n in calls]
            # And the survivor still serves
            assert client.ping("asr")["worker"].startswith("survivor@")
        twice = _received_ids(a) & _received_ids(b)
        record("kill9", calls=40, lost=0, ran_twice=len(twice))
    finally:
        a.kill()
        b.stop()


def test_sigterm_mid_task_finishes_the_task(own_vhost: Vhost, tmp_path) -> None:
    # Given a long recording (~20 s of speech) and one worker
    clips = [sf.read(DATA / n, dtype="float32")[0] for n in CLIPS[:6]]
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.concatenate(clips), 16000)
    worker = Worker(own_vhost.url, "asr", name="graceful").start().wait_warm("asr")
    try:
        with Client(own_vhost.url) as client:
            answer: dict = {}

            def call() -> None:
                try:
                    answer.update(client.asr(long_wav, timeout=120))
                except Exception as exc:  # reported by the assertion below
                    answer["error"] = repr(exc)

            caller = threading.Thread(target=call)
            caller.start()
            wait_for(lambda: _received_ids(worker), 30, "the call at the worker", 0.05)
            # "received" is the parent's line; the child that runs the task logs nothing
            # until it ends, so give it a moment to start
            time.sleep(0.5)
            # When the worker's main process is asked to stop (warm shutdown) mid-task
            assert worker.proc is not None
            os.kill(worker.proc.pid, signal.SIGTERM)
            caller.join(150)
            # Then it finished the task first: the caller has the whole transcript
            assert len(answer.get("text", "").split()) > 40, answer
            assert worker.proc.wait(60) == 0
            assert "succeeded" in worker.log()
            assert own_vhost.queues()["asr"] == 0
        record("sigterm", lost=0, exit_code=0)
    finally:
        worker.kill()
