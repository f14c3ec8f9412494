"""The job store on a real SQLite file and a real PostgreSQL schema: claims are exclusive,
leases expire, a gateway whose lease was taken over can write nothing."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.errors import UnknownJob
from producer.servers.jobs.runner import sign, verify
from producer.servers.jobs.store import JobStore
from tests.clients.jobs_helpers import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, JobStore]]:
    """Two stores on the same database, as two gateways have them."""
    if request.param == "sqlite":
        yield JobStore("", tmp_path), JobStore("", tmp_path)
        return
    with postgres_schema() as url:
        one, two = JobStore(url, tmp_path), JobStore(url, tmp_path)
        yield one, two
        one.close()
        two.close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    path.write_bytes(bytes(range(256)) * 10_000)  # 2.5 MB: three chunks
    return path


def test_each_job_is_claimed_by_one_owner(stores: tuple[JobStore, JobStore], clip: Path) -> None:
    # Given 24 queued jobs and eight threads on two stores claiming at once
    ids = {stores[0].create("asr", {}, [clip]).id for _ in range(24)}
    claimed: list[tuple[str, str]] = []

    def claim_all(store: JobStore, owner: str) -> None:
        while (job := store.claim(owner, lease=60)) is not None:
            claimed.append((job.id, owner))

    threads = [
        threading.Thread(target=claim_all, args=(stores[i % 2], f"owner-{i}")) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then every job was claimed exactly once (by whichever threads got there first)
    assert sorted(job_id for job_id, _ in claimed) == sorted(ids)


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_writes_nothing(
    stores: tuple[JobStore, JobStore], clip: Path
) -> None:
    one, two = stores
    job = one.create("transcribe", {"parallel": 2}, [clip], "http://127.0.0.1:9/hook")
    assert b"".join(two.audio(job.id, 0)) == clip.read_bytes()
    assert one.claim("a", lease=0.5) is not None
    assert two.claim("b", lease=0.5) is None  # held
    assert one.heartbeat(job.id, "a", 0.5, 0.3) is False  # renewed, not cancelled
    time.sleep(0.7)
    taken = two.claim("b", lease=30)
    assert taken is not None and taken.attempts == 2 and taken.progress == 0.3
    assert one.heartbeat(job.id, "a", 0.5, 0.5) is None  # "a" learns it lost the job
    assert not one.finish(job.id, "a", "done", result={"text": "stale"})
    assert two.finish(job.id, "b", "done", result={"text": "fresh"})
    ended = one.get(job.id)
    assert ended.state == "done" and ended.result == {"text": "fresh"} and ended.progress == 1
    assert list(one.audio(job.id, 0)) == []  # the audio went with the run
    # The callback is due once: held by the first to take it, then recorded as sent
    assert one.due_callback(hold=30) is not None and two.due_callback(hold=30) is None
    two.callback_result(job.id, True, None)
    assert one.sweep(retention=0) == 1
    with pytest.raises(UnknownJob):
        two.get(job.id)


def test_cancel_ends_a_queued_job_and_flags_a_running_one(
    stores: tuple[JobStore, JobStore], clip: Path
) -> None:
    one, two = stores
    running = one.create("asr", {}, [clip], "http://127.0.0.1:9/hook")
    queued = one.create("asr", {}, [clip])
    assert two.claim("a", lease=30).id == running.id  # type: ignore[union-attr]
    assert one.cancel(queued.id).state == "cancelled"
    assert one.cancel(running.id).state == "running"
    assert two.heartbeat(running.id, "a", 30, 0.1) is True  # the runner is told to stop
    assert two.claim("a", lease=30) is None  # the cancelled job never starts
    assert one.audio_bytes() == clip.stat().st_size  # only the running job's audio is left
    # A callback not yet delivered keeps its job past the retention until it settles
    assert two.finish(running.id, "a", "cancelled")
    assert one.sweep(retention=0) == 1  # the queued job, which had no callback
    two.callback_result(running.id, False, None)  # given up
    assert one.sweep(retention=0) == 1


def test_signatures_bind_the_secret_the_body_and_a_recent_time() -> None:
    body, now = b'{"id":"x","state":"done"}', str(int(time.time()))
    signature = sign("s3cret", now, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify("s3cret", now, body, signature)
    assert not verify("other", now, body, signature)
    assert not verify("s3cret", now, body + b" ", signature)
    old = str(int(time.time()) - 3600)
    assert not verify("s3cret", old, body, sign("s3cret", old, body))  # a replay
    assert not verify("s3cret", "soon", body, signature)
