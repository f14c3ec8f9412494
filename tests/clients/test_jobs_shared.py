"""Two gateway processes sharing jobs through PostgreSQL: one is killed mid-job, the other
finishes its work; no job runs on both at once, every callback arrives once."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.jobs_helpers import (
    SENTENCES,
    Receiver,
    check_signed,
    job,
    job_gateway,
    postgres_schema,
    recording,
    submit,
    wait_state,
)
from tests.helpers import DATA, TRANSCRIPTS, wait_for, word_errors

pytestmark = pytest.mark.usefixtures("asr_worker", "vad_worker")
CLIPS = ["fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav", "numbers_kal16.wav"]


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def _attempts(log: str, job_id: str) -> list[int]:
    return [int(n) for n in re.findall(rf"job {job_id} \(\w+(?:\.\w+)?\): attempt (\d+)", log)]


def test_two_gateways_share_jobs_and_one_dies_mid_job(
    broker_url: str, tmp_path: Path, store_url: str
) -> None:
    receiver = Receiver(fail_first=1)
    audio, said = recording(SENTENCES)
    # Given gateway A running a long transcribe job from a PostgreSQL store
    a = job_gateway(broker_url, tmp_path / "a", SPEECH_JOBS_DB=store_url)
    b = None
    try:
        long_job = submit(a.url, "transcribe", audio, parallel=1, callback=receiver.url)
        wait_for(lambda: job(a.url, long_job)["progress"] >= 0.25, 90, "a quarter of the job")
        # And gateway B on the same store, given four asr jobs either gateway may run
        b = job_gateway(broker_url, tmp_path / "b", SPEECH_JOBS_DB=store_url)
        short = {
            submit(b.url, "asr", (DATA / name).read_bytes(), callback=receiver.url): name
            for name in CLIPS
        }
        # When A is killed (kill -9) while it holds the transcribe job
        a.kill()
        # Then B finishes every job: the transcribe after A's lease ran out
        done = wait_state(b.url, long_job, ("done", "failed"), timeout=180)
        assert done["state"] == "done", done
        assert word_errors(said, done["result"]["text"]) / len(said.split()) < 0.3
        for job_id, name in short.items():
            finished = wait_state(b.url, job_id, ("done", "failed"), timeout=60)
            said_here = TRANSCRIPTS[name]
            errors = word_errors(said_here, finished["result"]["text"])
            assert errors / len(said_here.split()) < 0.4, finished
        # And no job ran on both gateways at once: each attempt number appears once, and
        # only a job A held when it died was run again
        logs = {"a": a.log(), "b": b.log()}
        for job_id in [long_job, *short]:
            runs = sorted(_attempts(logs["a"], job_id) + _attempts(logs["b"], job_id))
            assert runs == list(range(1, len(runs) + 1)), (job_id, runs)
        assert _attempts(logs["a"], long_job) == [1] and _attempts(logs["b"], long_job) == [2]
        # And every callback was accepted exactly once, signed, after one refused delivery
        for job_id in [long_job, *short]:
            wait_for(lambda j=job_id: receiver.accepted(j), 30, f"the callback of {job_id}")
        wait_for(lambda: True, 2, "")
        for job_id in [long_job, *short]:
            (accepted,) = receiver.accepted(job_id)
            assert check_signed(accepted) == job(b.url, job_id)
            assert [p["status"] for p in receiver.for_job(job_id)] == [503, 200]
    finally:
        a.kill()
        if b is not None:
            b.stop()
        receiver.close()
