"""What the job store will hold: jobs per caller and all together, bytes of audio, and how
long a job may wait queued.

The counts are of jobs queued or running (finished ones hold no audio and go at their
retention); they are checked before an upload is read (from its Content-Length) and again
in the transaction that stores the job, so concurrent submissions cannot pass them
together. Queued jobs past their maximum wait end failed with a JobExpired error.
"""

import json
from dataclasses import dataclass
from typing import Any

from producer.errors import JobExpired, StorageFull, TooManyRequests
from producer.servers import wire

ACTIVE = "state IN ('queued', 'running')"


@dataclass(frozen=True)
class JobLimits:
    """SPEECH_JOBS_PER_CALLER, SPEECH_JOBS_MAX, SPEECH_JOBS_MAX_BYTES (producer.settings)."""

    per_caller: int
    most: int
    max_bytes: int


def check_room(cur: Any, limits: JobLimits, caller: str, size: int) -> None:
    """Raise TooManyRequests or StorageFull if a job of `size` bytes by `caller` would pass
    a limit; `cur` is a cursor of the store (producer.servers.jobs.store)."""
    cur.execute(
        f"SELECT COUNT(*), COALESCE(SUM(bytes), 0),"
        f" COALESCE(SUM(CASE WHEN caller = ? THEN 1 ELSE 0 END), 0)"
        f" FROM speech_jobs WHERE {ACTIVE}",
        (caller,),
    )
    total, held, mine = (int(value) for value in cur.fetchone())
    if mine >= limits.per_caller:
        raise TooManyRequests(
            f"this caller has {mine} jobs queued or running, the most it may have is"
            f" {limits.per_caller} (SPEECH_JOBS_PER_CALLER): wait for some to end"
        )
    if total >= limits.most:
        raise TooManyRequests(
            f"the gateway has {total} jobs queued or running, its maximum"
            f" (SPEECH_JOBS_MAX): retry later"
        )
    if held + size > limits.max_bytes:
        raise StorageFull(
            f"the job store holds {held} bytes of audio; {size} more would pass its maximum"
            f" of {limits.max_bytes} (SPEECH_JOBS_MAX_BYTES): retry later"
        )


def expire_queued(cur: Any, max_queued: float, now: float) -> int:
    """End failed every job queued for longer than `max_queued` seconds at `now`; how many."""
    error = wire.error_body(
        JobExpired(
            f"the job waited queued for more than {max_queued:g} s"
            " (SPEECH_JOB_MAX_QUEUED_SECONDS): no worker served it in time; submit it again"
        )
    )
    cur.execute(
        "SELECT id FROM speech_jobs WHERE state = 'queued' AND created < ?",
        (now - max_queued,),
    )
    ids = [row[0] for row in cur.fetchall()]
    for job_id in ids:
        cur.execute(
            "UPDATE speech_jobs SET state = 'failed', error = ?, finished = ?, lease_until = NULL,"
            " callback_state = CASE WHEN callback IS NULL THEN NULL ELSE 'pending' END,"
            " callback_next = ? WHERE id = ? AND state = 'queued'",
            (json.dumps(error), now, now, job_id),
        )
        cur.execute("DELETE FROM speech_job_audio WHERE job_id = ?", (job_id,))
    return len(ids)
