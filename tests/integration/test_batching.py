"""Batched inference on real workers: requests that arrive together run in one pass, and
each is still answered, acked and failed alone (tasks/batch.py)."""

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from producer import CallTimeout, Client, InvalidAudio, InvalidOptions, RemoteError
from tests.helpers import DATA, Vhost, Worker, options, wait_for
from tests.signals import clip, silence, wav

# Long enough that requests sent together from threads always share a batch.
GATHER = {"SPEECH_BATCH_WAIT_MS": "300"}
CLIPS = ["fox_kal16.wav", "weather_awb.wav", "meeting_rms.wav"]


def batches(worker: Worker) -> list[int]:
    """Sizes of the batched passes the worker logged."""
    return [
        int(n) for n in re.findall(r"batched \S+: \d+ requests, (\d+) in one pass", worker.log())
    ]


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` at once from threads; each gives its answer or the error it raised."""

    def run(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def batch_worker(own_vhost: Vhost, request: pytest.FixtureRequest) -> Iterator[Worker]:
    queue, app, env = request.param
    worker = Worker(own_vhost.url, queue, name=f"batch-{queue}", env={**GATHER, **env}, app=app)
    worker.start(180)
    if app == "tasks":
        worker.wait_warm(queue)
    yield worker
    worker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("batch_worker", [("speaker", "tasks", {})], indirect=True)
def test_a_bad_clip_in_a_batch_fails_alone_and_the_rest_equal_unbatched(
    batch_worker: Worker, own_vhost: Vhost
) -> None:
    from tasks.audio import decode
    from tasks.speaker import embed

    # Given three voices, undecodable bytes and a clip of silence, sent together
    audios = [(DATA / name).read_bytes() for name in CLIPS]
    bad = [b"RIFF\x00\x00not audio at all", wav(silence(1.0))]
    with Client(own_vhost.url, timeout=120) as client:
        answers = together([lambda a=a: client.speaker_embed(a) for a in audios + bad])
    # Then the four that decode ran in one pass (the undecodable one is left out of it)
    assert max(batches(batch_worker)) == 4
    # and each good clip has the embedding the unbatched code makes, within 1e-4
    for audio, answer in zip(audios, answers[:3], strict=True):
        expected, _ = embed(decode(audio, max_seconds=600, max_bytes=1 << 30))
        assert np.abs(answer["embedding"] - expected).max() <= 1e-4
    # and each bad one failed alone, with its own error
    assert isinstance(answers[3], InvalidAudio)
    assert isinstance(answers[4], InvalidAudio) and "speech" in str(answers[4])


@pytest.mark.parametrize("batch_worker", [("vad", "tasks", {})], indirect=True)
def test_errors_in_a_vad_batch_are_per_request(batch_worker: Worker, own_vhost: Vhost) -> None:
    from tasks.vad import detect

    samples = clip("fox_kal16.wav")
    audio = wav(samples)
    with Client(own_vhost.url, timeout=60) as client:
        # Given good requests, one with an option out of range (sent past the Client's own
        # check, as another producer could) and one with an empty clip, all at once
        send = client.app.send_task

        def raw(kwargs: dict[str, Any], data: bytes = audio) -> Callable[[], Any]:
            return lambda: send("speech.vad", args=[data], kwargs=kwargs, queue="vad").get(60)

        answers = together(
            [
                lambda: client.vad(audio),
                raw({"threshold": 5.0}),
                lambda: client.vad(audio, threshold=0.6),
                raw({}, wav(np.zeros(0, np.float32))),
            ]
        )
    # Then they shared a batch, the good ones got what unbatched vad gives
    assert max(batches(batch_worker)) >= 2
    assert answers[0]["segments"] == detect(samples, **options("vad"))["segments"]
    expected = detect(samples, **options("vad", threshold=0.6))["segments"]
    assert answers[2]["segments"] == expected
    # and the bad ones failed alone, each with its own error
    assert isinstance(answers[1], InvalidOptions) and "threshold" in str(answers[1])
    assert isinstance(answers[3], InvalidAudio)


# 1 s and 2 s clips batch, 5 s runs alone; a long wait so that on a busy machine the
# requests sent together still share a batch
SLOW_ENV = {"SPEECH_BATCH_MAX_BYTES": "100000", "SPEECH_BATCH_WAIT_MS": "1500"}


# A slow-batch worker that waits 1.5 s to gather a batch: requests sent together share one
SLOW_BATCHES = pytest.mark.parametrize(
    "batch_worker",
    [("slowbatch", "tests.batch_app", {"SPEECH_BATCH_WAIT_MS": "1500"})],
    indirect=True,
)


@pytest.mark.parametrize(
    "batch_worker", [("slowbatch", "tests.batch_app", SLOW_ENV)], indirect=True
)
def test_a_request_run_alone_keeps_its_own_time_limit(
    batch_worker: Worker, own_vhost: Vhost
) -> None:
    # Given short clips and a 5 s clip that hangs too (past the batched size, it runs alone)
    short, hang_alone = wav(silence(1.0)), wav(silence(5.0))
    with Client(own_vhost.url, timeout=30) as client:
        client.call("slowbatch", short)  # the queue exists: the client learns it
        answers = together(
            [lambda: client.call("slowbatch", short)] * 3
            + [lambda: client.call("slowbatch", hang_alone)]
        )
    # Then the short ones are answered and the long one alone hit its soft limit (1 s)
    assert [a["seconds"] for a in answers[:3]] == [1.0, 1.0, 1.0]
    assert isinstance(answers[3], RemoteError), answers[3]
    assert answers[3].remote_type == "SoftTimeLimitExceeded"
    # and the short ones ran in a batch without it
    assert max(batches(batch_worker)) >= 2


@SLOW_BATCHES
def test_a_batch_past_the_soft_limit_answers_each_request_and_serves_on(
    batch_worker: Worker, own_vhost: Vhost
) -> None:
    short, hangs = wav(silence(1.0)), wav(silence(2.0))
    with Client(own_vhost.url, timeout=30) as client:
        client.call("slowbatch", short)
        # Given a batch in which one clip never finishes
        answers = together(
            [lambda: client.call("slowbatch", short)] * 2
            + [lambda: client.call("slowbatch", hangs)]
        )
        # Then every request of it is answered with the soft time limit's error (1 s)
        for answer in answers:
            assert isinstance(answer, RemoteError), answer
            assert answer.remote_type == "SoftTimeLimitExceeded"
        # and acked: nothing of it waits in the queue or runs again
        wait_for(lambda: own_vhost.queues().get("slowbatch") == 0, 10, "an empty queue")
        # and the worker serves the next batch
        again = together([lambda: client.call("slowbatch", short)] * 3)
    assert [a["seconds"] for a in again] == [1.0, 1.0, 1.0]
    assert "Hard time limit" not in batch_worker.log()


@SLOW_BATCHES
def test_a_clip_that_kills_its_batch_is_dead_lettered_alone(
    batch_worker: Worker, own_vhost: Vhost
) -> None:
    short, killer = wav(silence(1.0)), wav(silence(1.5))
    with Client(own_vhost.url, timeout=60) as client:
        client.call("slowbatch", short)
        # Given a batch holding a clip that kills the process running it
        answers = together(
            [lambda: client.call("slowbatch", short)] * 2
            + [lambda: client.call("slowbatch", killer, timeout=25)]
        )
    # Then its batch-mates, delivered again, ran alone and were answered
    assert [a["seconds"] for a in answers[:2]] == [1.0, 1.0]
    # and the killer, alone at each delivery after the first, failed alone: dead-lettered
    # at the delivery limit, or (when the pool saw its process die only at the time limit)
    # answered with the time limit's error, as it would be unbatched
    assert isinstance(answers[2], (CallTimeout, RemoteError)), answers[2]
    wait_for(lambda: own_vhost.queues().get("slowbatch") == 0, 60, "an empty queue")
    log = batch_worker.log()
    assert log.count("WorkerLostError") >= 1
    assert log.count("succeeded") >= 3  # the warm-up call and both batch-mates
