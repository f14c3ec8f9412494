"""Jobs and long recordings through real gateway processes, a real broker, real workers
and real job stores (a SQLite file; PostgreSQL in test_jobs_shared.py)."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pika
import pytest

from tests.clients.jobs_helpers import (
    SENTENCES,
    Receiver,
    check_signed,
    job,
    job_gateway,
    recording,
    sqlite_rows,
    submit,
    wait_state,
)
from tests.clients.servers import Bridge, Gateway
from tests.helpers import DATA, TRANSCRIPTS, wait_for, word_errors

pytestmark = pytest.mark.usefixtures("asr_worker", "vad_worker")
FOX = (DATA / "fox_kal16.wav").read_bytes()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    yield server
    server.close()


@pytest.fixture
def gateway_on_sqlite(broker_url: str, tmp_path: Path) -> Iterator[Gateway]:
    server = job_gateway(broker_url, tmp_path / "data", SPEECH_JOB_RETENTION="600")
    yield server
    server.stop()


def test_an_asr_job_is_submitted_polled_and_called_back(
    gateway_on_sqlite: Gateway, receiver: Receiver, tmp_path: Path
) -> None:
    # Given a job with a callback whose receiver fails its first delivery
    job_id = submit(gateway_on_sqlite.url, "asr", FOX, callback=receiver.url, timeout=60)
    # When it is polled until it ends
    done = wait_state(gateway_on_sqlite.url, job_id, ("done", "failed"))
    # Then it is done with the transcript, and its audio is gone from the store
    assert done["state"] == "done", done
    assert done["progress"] == 1.0 and done["algorithm"] == "asr"
    assert word_errors(TRANSCRIPTS["fox_kal16.wav"], done["result"]["text"]) <= 2
    assert sqlite_rows(tmp_path / "data") == (1, 0)
    # And the callback came again after the refused one, once accepted, signed, the same body
    wait_for(lambda: receiver.accepted(job_id), 30, "the callback")
    posts = receiver.for_job(job_id)
    assert [p["status"] for p in posts] == [503, 200]
    assert posts[1]["at"] - posts[0]["at"] >= 0.9  # backed off
    assert check_signed(posts[1]) == check_signed(posts[0]) == done


def test_a_transcribe_job_follows_progress_to_the_transcript(gateway_on_sqlite: Gateway) -> None:
    audio, said = recording(SENTENCES[:6])
    job_id = submit(gateway_on_sqlite.url, "transcribe", audio, parallel=2, threshold=0.5)
    seen = []
    while (state := job(gateway_on_sqlite.url, job_id))["state"] not in ("done", "failed"):
        seen.append(state["progress"])
        wait_for(lambda: True, 1, "")
    assert state["state"] == "done", state
    assert word_errors(said, state["result"]["text"]) / len(said.split()) < 0.3
    assert len(state["result"]["segments"]) == 6
    assert seen == sorted(seen) and all(0 <= p < 1 for p in seen)


def test_transcribe_answers_while_the_caller_waits(gateway_on_sqlite: Gateway) -> None:
    audio, said = recording(SENTENCES[4:8])
    res = httpx.post(
        f"{gateway_on_sqlite.url}/v1/transcribe?parallel=2",
        content=audio,
        headers={"Content-Type": "audio/wav"},
        timeout=120,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["algorithm"] == "transcribe" and body["seconds"] > 0
    assert word_errors(said, body["result"]["text"]) / len(said.split()) < 0.3
    # A multipart upload too, with a bad option refused before the upload is read
    res = httpx.post(
        f"{gateway_on_sqlite.url}/v1/transcribe",
        files={"audio": audio},
        data={"parallel": "99"},
        timeout=120,
    )
    assert res.status_code == 400 and res.json()["error"]["type"] == "InvalidOptions", res.text


def test_cancel_a_running_transcribe_and_a_queued_job(
    broker_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    gateway = job_gateway(broker_url, tmp_path / "data", SPEECH_JOB_THREADS="1")
    try:
        audio, _ = recording(SENTENCES)
        # Given a long transcribe running one segment at a time, and an asr job behind it
        running = submit(gateway.url, "transcribe", audio, parallel=1, callback=receiver.url)
        queued = submit(gateway.url, "asr", FOX)
        wait_for(lambda: job(gateway.url, running)["progress"] > 0, 60, "progress")
        # When both are cancelled
        answer = httpx.delete(f"{gateway.url}/v1/jobs/{queued}", timeout=10).json()
        assert answer["state"] == "cancelled" and "started" not in answer
        httpx.delete(f"{gateway.url}/v1/jobs/{running}", timeout=10).raise_for_status()
        # Then the transcribe stops between segments, and the queued job never starts
        ended = wait_state(gateway.url, running, ("cancelled", "done", "failed"), timeout=30)
        assert ended["state"] == "cancelled" and ended["progress"] < 1 and "result" not in ended
        wait_for(lambda: receiver.accepted(running), 30, "the cancelled job's callback")
        assert check_signed(receiver.accepted(running)[0])["state"] == "cancelled"
        assert "started" not in job(gateway.url, queued)
        assert sqlite_rows(tmp_path / "data")[1] == 0  # no audio left
        # And a second DELETE of an ended job answers it as it is
        again = httpx.delete(f"{gateway.url}/v1/jobs/{running}", timeout=10)
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
    finally:
        gateway.stop()


def test_finished_jobs_are_removed_after_their_retention(broker_url: str, tmp_path: Path) -> None:
    gateway = job_gateway(broker_url, tmp_path / "data", SPEECH_JOB_RETENTION="1")
    try:
        job_id = submit(gateway.url, "vad", FOX)
        assert wait_state(gateway.url, job_id, ("done",))["result"]["segments"]

        def removed() -> bool:
            return httpx.get(f"{gateway.url}/v1/jobs/{job_id}", timeout=10).status_code == 404

        wait_for(removed, 15, "the job's removal")
        res = httpx.get(f"{gateway.url}/v1/jobs/{job_id}", timeout=10)
        assert res.json()["error"]["type"] == "UnknownJob"
        assert sqlite_rows(tmp_path / "data") == (0, 0)
    finally:
        gateway.stop()


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_bad_input_and_oversize_are_refused_before_anything_is_stored(
    broker_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    limits = {"SPEECH_MAX_PAYLOAD_BYTES": "200000", "SPEECH_MAX_RECORDING_BYTES": "400000"}
    gateway = job_gateway(broker_url, data, **limits)
    url = f"{gateway.url}/v1/jobs"
    big = bytes(300_000)
    cases = [
        ({"data": {"algorithm": "nope"}, "files": {"audio": FOX}}, 400, "unknown algorithm"),
        ({"data": {}, "files": {"audio": FOX}}, 400, "'algorithm' field"),
        ({"data": {"algorithm": "vad", "threshold": "7"}, "files": {"audio": FOX}}, 400, "thresh"),
        ({"data": {"algorithm": "asr", "language": "fr"}, "files": {"audio": FOX}}, 400, "opti"),
        ({"data": {"algorithm": "asr", "timeout": "-1"}, "files": {"audio": FOX}}, 400, "timeout"),
        ({"data": {"algorithm": "asr", "callback": "ftp://x"}, "files": {"audio": FOX}}, 400,
         "callback"),
        ({"data": {"algorithm": "asr"}, "files": [("audio", FOX), ("audio", FOX)]}, 400, "clip"),
        ({"data": {"algorithm": "asr"}, "files": {"clip": FOX}}, 400, "'audio' file"),
        ({"data": {"algorithm": "asr"}, "files": {"audio": big}}, 413, "SPEECH_MAX_PAYLOAD_BYTES"),
        ({"data": {"algorithm": "transcribe"}, "files": {"audio": big + big}}, 413, "RECORDING"),
        ({"content": _chunks(big + big), "params": {"algorithm": "transcribe"},
          "headers": {"Content-Type": "audio/wav"}}, 413, "RECORDING"),  # chunked: no length
        ({"content": b"hi", "headers": {"Content-Type": "text/plain"}}, 415, "is not audio"),
    ]  # fmt: skip
    try:
        for kwargs, status, message in cases:
            res = httpx.post(url, timeout=30, **kwargs)
            assert res.status_code == status, (kwargs.get("data"), res.text)
            assert message in res.json()["error"]["message"], res.text
        res = httpx.post(f"{gateway.url}/v1/transcribe", content=big + big, timeout=30)
        assert res.status_code == 413 and res.json()["error"]["type"] == "PayloadTooLarge"
        for method in ("GET", "DELETE"):
            for job_id in ("0" * 32, "not-a-job"):
                res = httpx.request(method, f"{url}/{job_id}", timeout=10)
                assert res.status_code == 404 and res.json()["error"]["type"] == "UnknownJob"
        # Nothing stored, nothing left in the spool folder
        assert sqlite_rows(data) == (0, 0)
        assert list((data / "spool").iterdir()) == []
    finally:
        gateway.stop()


def test_a_job_survives_kill_9_of_its_gateway(
    broker_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    data = tmp_path / "data"
    audio, said = recording(SENTENCES)
    # Given a transcribe job of twelve sentences, one segment at a time, half done
    first = job_gateway(broker_url, data)
    job_id = submit(first.url, "transcribe", audio, parallel=1, callback=receiver.url)
    wait_for(lambda: job(first.url, job_id)["progress"] >= 0.25, 90, "a quarter of the job")
    # When its gateway is killed and another starts on the same store
    first.kill()
    second = job_gateway(broker_url, data)
    try:
        # Then the job is taken over once the lease ran out and ends with the transcript
        done = wait_state(second.url, job_id, ("done", "failed"), timeout=180)
        assert done["state"] == "done", done
        assert word_errors(said, done["result"]["text"]) / len(said.split()) < 0.3
        assert len(done["result"]["segments"]) == len(SENTENCES)
        assert f"job {job_id} (transcribe): attempt 2" in second.log()
        # And the callback arrives once accepted (after one refusal), signed, as polled
        wait_for(lambda: receiver.accepted(job_id), 30, "the callback")
        wait_for(lambda: True, 2, "")
        assert len(receiver.accepted(job_id)) == 1
        assert check_signed(receiver.accepted(job_id)[0]) == done
    finally:
        second.stop()


def test_rpc_transcribe_on_the_bridge(broker_url: str) -> None:
    bridge = Bridge(broker_url).start()
    audio, said = recording(SENTENCES[8:])
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        replies: list[bytes] = []
        channel.basic_consume(
            "amq.rabbitmq.reply-to", lambda *a: replies.append(a[3]), auto_ack=True
        )
        body = msgpack.packb({"audio": audio, "options": {"parallel": 2}, "timeout": 60})
        props = pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="t1")
        channel.basic_publish("", "rpc.transcribe", body, props)
        wait_for(lambda: connection.process_data_events(0.2) or replies, 120, "the reply")
        reply = msgpack.unpackb(replies[0])
        assert reply["ok"], reply
        assert word_errors(said, reply["result"]["text"]) / len(said.split()) < 0.3
        bad = msgpack.packb({"audio": audio, "options": {"parallel": 0}})
        channel.basic_publish("", "rpc.transcribe", bad, props)
        wait_for(lambda: connection.process_data_events(0.2) or len(replies) > 1, 30, "reply")
        assert msgpack.unpackb(replies[1])["error"]["type"] == "InvalidOptions"
    finally:
        connection.close()
        bridge.stop()


def test_progress_moves_as_segments_are_answered_and_a_cancel_lands_within_seconds(
    broker_url: str, tmp_path: Path
) -> None:
    # Given a ~60 s recording (15 sentences) transcribed one segment at a time
    names = [*TRANSCRIPTS, *list(TRANSCRIPTS)[:3]]
    audio, _ = recording(names)
    gateway = job_gateway(broker_url, tmp_path / "data", SPEECH_JOB_LEASE="30")
    try:
        watched = submit(gateway.url, "transcribe", audio, parallel=1)
        # When its progress is read every 0.2 s until it ends
        seen: list[float] = []

        def ended() -> bool:
            now = job(gateway.url, watched)
            if now["state"] == "running" and (not seen or now["progress"] != seen[-1]):
                seen.append(now["progress"])
            return now["state"] in ("done", "failed")

        wait_for(ended, 180, "the transcribe job to end", every=0.2)
        # Then it moved forward at least three times while running, never back
        rises = [b for a, b in zip(seen, seen[1:], strict=False) if b > a]
        assert len(rises) >= 3 and seen == sorted(seen), seen
        assert job(gateway.url, watched)["state"] == "done"
        # And a second one, cancelled 2 s after it starts running, ends within 3 s
        stopped = submit(gateway.url, "transcribe", audio, parallel=1)
        wait_state(gateway.url, stopped, ("running",), timeout=60)
        time.sleep(2)  # the job runs for 2 s: the cancel lands mid-recording
        asked = time.monotonic()
        httpx.delete(f"{gateway.url}/v1/jobs/{stopped}", timeout=10).raise_for_status()
        final = wait_state(gateway.url, stopped, ("cancelled", "done", "failed"), timeout=10)
        took = time.monotonic() - asked
        assert final["state"] == "cancelled" and "result" not in final, final
        assert took < 3, took
    finally:
        gateway.stop()
