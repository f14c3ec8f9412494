"""Jobs run by the gateway's own threads: claimed with a lease, run through the Client,
ended once, announced to their callback.

Each gateway process is one owner. Its job threads claim the oldest runnable job from the
shared store (producer.servers.jobs.store) and renew the claim every third of SPEECH_JOB_LEASE
while it runs; a gateway that dies stops renewing, and after the lease another gateway
(or this one, restarted) claims the job and runs it from the start: the algorithms are
pure functions, so running one again is safe, and a gateway whose lease was taken over
can write nothing (the store checks the owner). A cancelled transcribe stops between
segments; a job killed too often (every attempt took its gateway down) ends failed.

A job whose algorithm has no live worker does not hold a job thread for its timeout: the
broker is asked first whether anything consumes its queues (the answer is kept for
LIVENESS_SECONDS) and, with nothing consuming, the
job goes back to the queue unattempted, to be tried again after a back-off that grows with
its age (up to MAX_BACKOFF_SECONDS), and expires after SPEECH_JOB_MAX_QUEUED_SECONDS.

The housekeeping thread POSTs each finished job's callback: the job as GET /v1/jobs/{id}
shows it, signed with HMAC-SHA256 over "<timestamp>.<body>" (see `sign`), retried with
back-off until the receiver answers 2xx; it removes jobs past their retention, ends jobs
queued too long, and removes spool files left by dead gateway processes of this host.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from producer.errors import (
    BrokerBlocked,
    BrokerUnavailable,
    Overloaded,
    SpeechError,
    StoreUnavailable,
)
from producer.servers import operations, wire
from producer.servers.jobs.callbacks import Policy, post
from producer.servers.jobs.spool import remove_orphans, tag
from producer.servers.jobs.store import Job, JobStore

log = logging.getLogger("speech.jobs")
# Runs of one job before it is failed: a job that kills its gateway must not loop forever.
MAX_ATTEMPTS = 3
# Seconds a job waits before another try when the broker was unreachable or the queue full.
RETRY_SECONDS = 5.0
# Seconds a queue's liveness (consumed or not) is trusted before asking the broker again.
LIVENESS_SECONDS = 5.0
# Longest wait before a job whose workers were away is tried again.
MAX_BACKOFF_SECONDS = 60.0
# Seconds an idle job thread waits before looking for work again (a submit wakes it).
POLL_SECONDS = 1.0
# Seconds between a running job's writes of its progress (which also renew its lease and
# read a cancellation, whichever gateway received the DELETE): two writes a second per job.
BEAT_SECONDS = 0.5
# Seconds between sweeps of jobs past their retention.
SWEEP_SECONDS = 10.0
# Seconds a callback receiver has to answer one POST; back-off between attempts.
CALLBACK_TIMEOUT = 10.0
CALLBACK_BACKOFF_FIRST, CALLBACK_BACKOFF_MAX = 1.0, 300.0
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Speech-Signature", "X-Speech-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Speech-Signature value: "sha256=" + hex HMAC-SHA256 of "<timestamp>.<body>"."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300.0
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Cancelled(Exception):
    """Raised inside a job's run when the job was cancelled."""


class Released(Exception):
    """Raised inside a job's run when its gateway stops or lost its lease."""


class JobRunner:
    """A gateway's job threads and its housekeeping thread."""

    def __init__(
        self,
        client: Any,
        store: JobStore,
        spool: Path,
        *,
        threads: int,
        lease: float,
        retention: float,
        secret: str,
        callback_attempts: int,
        callbacks: Policy | None = None,
        max_queued: float = float("inf"),
    ) -> None:
        self.max_queued = max_queued
        self._liveness: dict[str, tuple[float, bool]] = {}  # queue -> (asked at, alive)
        self.client, self.store, self.spool = client, store, spool
        self.threads, self.lease, self.retention = max(1, threads), lease, retention
        self.secret, self.callback_attempts = secret, max(1, callback_attempts)
        self.callbacks = callbacks or Policy()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.work = threading.Event()  # a job was submitted
        self.ended = threading.Event()  # a job ended: its callback is due
        self._threads: list[threading.Thread] = []
        self._held: set[str] = set()  # ids of the jobs this gateway's threads are running

    def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        removed = remove_orphans(self.spool)
        if removed:
            log.info("removed %d spool files of gateway processes no longer running", removed)
        loops = [self._jobs] * self.threads + [self._housekeeping]
        for i, loop in enumerate(loops):
            thread = threading.Thread(target=loop, name=f"speech-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("job runner %s: %d threads, lease %g s", self.owner, self.threads, self.lease)

    def stop(self, wait: float = 5.0) -> None:
        """Stop claiming; running transcribes give their job back at the next segment."""
        self.stopping.set()
        self.work.set()
        self.ended.set()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for job_id in list(self._held):  # a call still running: the job goes back at once
            with contextlib.suppress(StoreUnavailable):
                self.store.release(job_id, self.owner, 0.0)

    def wake(self) -> None:
        self.work.set()

    # --- running jobs ------------------------------------------------------------------
    def _jobs(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.store.claim(self.owner, self.lease)
            except StoreUnavailable as exc:
                log.warning("cannot claim jobs: %s", exc)
                job = None
            if job is None:
                self.work.wait(POLL_SECONDS)
                self.work.clear()
                continue
            self._held.add(job.id)
            try:
                self._run(job)
            except StoreUnavailable as exc:  # the lease runs out; another gateway resumes it
                log.warning("job %s: store failed mid-job: %s", job.id, exc)
            finally:
                self._held.discard(job.id)
            self.ended.set()

    def _run(self, job: Job) -> None:
        log.info("job %s (%s): attempt %d", job.id, job.operation, job.attempts)
        if job.cancel_requested:
            self.store.finish(job.id, self.owner, "cancelled")
            return
        if job.attempts > MAX_ATTEMPTS:
            message = f"the job was started {job.attempts - 1} times and never finished"
            error = {"type": "InternalError", "message": message}
            self.store.finish(job.id, self.owner, "failed", error=error)
            return
        away = self._unserved(job.operation, job.options.get("engine", "asr"))
        if away:
            delay = min(
                MAX_BACKOFF_SECONDS, max(RETRY_SECONDS, (self.store.clock() - job.created) / 4)
            )
            log.info("job %s: no worker consumes %s; again in %g s", job.id, away, delay)
            self.store.release(job.id, self.owner, delay, unrun=True)
            return
        beat = _Heartbeat(self, job)
        beat.start()
        try:
            result = self._execute(job, beat)
            beat.check(stopping=False)  # an answer in hand is kept even by a gateway stopping
        except Cancelled:
            self.store.finish(job.id, self.owner, "cancelled")
        except Released:
            if not beat.lost.is_set():
                self.store.release(job.id, self.owner, 0.0)
        except BrokerBlocked as exc:
            # A resource alarm blocks every publisher, whatever the job: it waits its turn
            # without using up its attempts, however long the alarm lasts.
            log.info("job %s: %s; trying again in %g s", job.id, exc, RETRY_SECONDS)
            self.store.release(job.id, self.owner, RETRY_SECONDS, unrun=True)
        except (BrokerUnavailable, Overloaded) as exc:
            if job.attempts < MAX_ATTEMPTS:
                log.info("job %s: %s; trying again in %g s", job.id, exc, RETRY_SECONDS)
                self.store.release(job.id, self.owner, RETRY_SECONDS)
            else:
                self.store.finish(job.id, self.owner, "failed", error=wire.error_body(exc))
        except SpeechError as exc:
            self.store.finish(job.id, self.owner, "failed", error=wire.error_body(exc))
        except Exception as exc:  # a bug: the job still ends, with the error named
            log.exception("job %s failed unexpectedly", job.id)
            self.store.finish(job.id, self.owner, "failed", error=wire.error_body(exc))
        else:
            self.store.finish(job.id, self.owner, "done", result=result)
        finally:
            beat.stop()
        log.info("job %s: ended", job.id)

    def _unserved(self, operation: str, engine: str = "asr") -> list[str]:
        """The queues `operation` needs that no worker consumes (asked of the broker at
        most every LIVENESS_SECONDS per queue: a passive declare counts the consumers,
        busy or not); a transcription needs vad and its engine (asr or whisper)."""
        transcribing = operation == operations.TRANSCRIBE
        needed = ["vad", engine] if transcribing else [operation.split(".")[0]]
        away = []
        for queue in needed:
            asked, served = self._liveness.get(queue, (-LIVENESS_SECONDS, False))
            if time.monotonic() - asked >= LIVENESS_SECONDS:
                served = self._consumed(queue)
                self._liveness[queue] = (time.monotonic(), served)
            if not served:
                away.append(queue)
        return away

    def _consumed(self, queue: str) -> bool:
        try:
            state = self.client.queue_state(queue)  # bounded, even by a hung node
            # no such queue: no worker ever served it
            return state is not None and state[1] > 0
        except Exception as exc:  # the broker: the call itself will say what is wrong
            log.info("cannot count the consumers of %s: %s", queue, exc)
            return True

    def _execute(self, job: Job, beat: "_Heartbeat") -> Any:
        options = dict(job.options)
        timeout = options.pop("timeout", None)
        if job.operation != operations.TRANSCRIBE:
            clips = [b"".join(self.store.audio(job.id, clip)) for clip in range(job.clips)]
            beat.check()
            result = wire.invoke(self.client, job.operation, clips, timeout, options)
            return wire.plain(result, binary=False)
        path = self.spool / f"{tag('job')}{job.id}.audio"
        try:
            with path.open("wb") as out:
                for chunk in self.store.audio(job.id, 0):
                    out.write(chunk)
            beat.check()

            def progress(done: int, total: int) -> None:
                beat.progress = min(0.99, done / total) if total else 0.0
                beat.check()  # between segments: cancelled, released or taken over

            result = operations.transcribe(self.client, str(path), timeout, options, progress)
        finally:
            path.unlink(missing_ok=True)
        return wire.plain(result, binary=False)

    # --- callbacks and retention ----------------------------------------------------------
    def _housekeeping(self) -> None:
        swept = 0.0
        while not self.stopping.is_set():
            try:
                job = self.store.due_callback(hold=CALLBACK_TIMEOUT * 3)
                if job is not None:
                    self._deliver(job)
                    continue
                if time.monotonic() - swept > min(SWEEP_SECONDS, max(0.5, self.retention / 2)):
                    swept = time.monotonic()
                    removed = self.store.sweep(self.retention)
                    if removed:
                        log.info("removed %d jobs past their retention", removed)
                    expired = self.store.expire(self.max_queued)
                    if expired:
                        log.info("%d jobs waited queued too long: failed (JobExpired)", expired)
                    remove_orphans(self.spool)
            except StoreUnavailable as exc:
                log.warning("job housekeeping: %s", exc)
            self.ended.wait(POLL_SECONDS)
            self.ended.clear()

    def _deliver(self, job: Job) -> None:
        assert job.callback is not None
        body = json.dumps(job.view(), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "speech-platform-jobs",
            "X-Speech-Job": job.id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        attempts = self.store.callback_attempts(job.id) + 1
        # to the address checked now, never a redirect (producer.servers.jobs.callbacks)
        delivered, why = post(self.callbacks, job.callback, body, headers, CALLBACK_TIMEOUT)
        if delivered:
            self.store.callback_result(job.id, True, None)
            return
        if attempts >= self.callback_attempts:
            log.warning("job %s: callback given up after %d attempts (%s)", job.id, attempts, why)
            self.store.callback_result(job.id, False, None)
            return
        retry_in = min(CALLBACK_BACKOFF_MAX, CALLBACK_BACKOFF_FIRST * 2 ** (attempts - 1))
        log.info("job %s: callback failed (%s); again in %g s", job.id, why, retry_in)
        self.store.callback_result(job.id, False, retry_in)


class _Heartbeat:
    """Every BEAT_SECONDS (a third of the lease at most): stores a running job's progress,
    renews its lease, and notes a cancellation or a lost lease, which the job's next
    progress check (every PROGRESS_TICK at most) acts on."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner, self.job = runner, job
        self.progress = 0.0
        self.cancelled, self.lost, self.done = (threading.Event() for _ in range(3))
        self.thread = threading.Thread(target=self._beat, name=f"beat-{job.id[:8]}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)

    def check(self, stopping: bool = True) -> None:
        if self.lost.is_set() or (stopping and self.runner.stopping.is_set()):
            raise Released()
        if self.cancelled.is_set():
            raise Cancelled()

    def _beat(self) -> None:
        every = max(0.2, min(BEAT_SECONDS, self.runner.lease / 3))
        while not self.done.wait(every):
            with contextlib.suppress(StoreUnavailable):  # the next beat tries again
                answer = self.runner.store.heartbeat(
                    self.job.id, self.runner.owner, self.runner.lease, self.progress
                )
                if answer is None:
                    log.warning("job %s: lease lost to another gateway", self.job.id)
                    self.lost.set()
                    return
                if answer:
                    self.cancelled.set()
