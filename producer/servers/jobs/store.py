"""Where jobs live: their state, options, result and audio, in SQLite or PostgreSQL.

One small interface over both: a SQLite file in the data folder by default (one machine,
any number of gateway processes on it), or a PostgreSQL database for gateways on several
machines sharing jobs. Every change of state is one transaction guarded by its
precondition (`WHERE state = 'running' AND owner = ?`), so a gateway whose lease ran out
can never overwrite the work of the gateway that took its job over. Audio is stored in
the database itself, in chunks, so any gateway can run any job, and it goes when the job
ends. Times are wall-clock seconds from the store's clock (time.time unless it is given
another: the tests move a fake one): gateways sharing a store need clocks in sync to well
under a lease. The schema is versioned: producer.servers.jobs.migrations brings a store
up to date when it is opened.
"""

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from producer.errors import StoreUnavailable, UnknownJob
from producer.servers.jobs.limits import JobLimits, check_room, expire_queued
from producer.servers.jobs.migrations import MIGRATIONS, Migration, migrate

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
# Audio is written and read in pieces of this size, never whole in one statement.
CHUNK_BYTES = 1024 * 1024
SQLITE_FILE = "jobs.sqlite3"

_COLUMNS = (
    "id, operation, options, clips, state, progress, result, error, callback, created,"
    " started, finished, owner, attempts, cancel_requested"
)


@dataclass(frozen=True)
class Job:
    id: str
    operation: str
    options: dict[str, Any]
    clips: int
    state: str
    progress: float
    result: Any
    error: dict[str, Any] | None
    callback: str | None
    created: float
    started: float | None
    finished: float | None
    owner: str | None
    attempts: int
    cancel_requested: bool

    def view(self) -> dict[str, Any]:
        """The job as GET /v1/jobs/{id} and the callback show it."""
        out: dict[str, Any] = {
            "id": self.id,
            "algorithm": self.operation,
            "state": self.state,
            "progress": round(self.progress, 4),
            "created": _iso(self.created),
        }
        if self.started is not None:
            out["started"] = _iso(self.started)
        if self.finished is not None:
            out["finished"] = _iso(self.finished)
        if self.state == "done":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class JobStore:
    """Jobs in SQLite (`url` "" or "sqlite:///path") or PostgreSQL ("postgresql://...")."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        per_caller: int = 2**31,
        most: int = 2**31,
        max_bytes: int = 2**62,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        """Open the store, migrated to the last of `migrations` (StoreTooNew if it is past
        them); `clock` tells the time (wall-clock seconds) for leases and every timestamp."""
        self.limits = JobLimits(per_caller, most, max_bytes)
        self.clock = clock
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            self.url = url
        else:
            path = Path(url.removeprefix("sqlite:///")) if url else data_dir / SQLITE_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            self.url = str(path)
        self._local = threading.local()
        with self._tx() as cur:
            migrate(cur, migrations)

    # --- connections --------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.postgres:
            import psycopg  # only gateways with a PostgreSQL store need it

            return psycopg.connect(self.url, connect_timeout=5)
        conn = sqlite3.connect(self.url, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction on this thread's connection; store failures as StoreUnavailable."""
        errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self.postgres:
            import psycopg

            errors = (psycopg.Error,)
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None or getattr(conn, "closed", False):
                conn = self._local.conn = self._connect()
            if not self.postgres:
                conn.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes
            cur = conn.cursor()
            try:
                yield _Cursor(cur, self.postgres)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except errors as exc:
            self._local.conn = None
            where = "PostgreSQL" if self.postgres else f"SQLite file {self.url}"
            raise StoreUnavailable(f"job store ({where}) failed: {exc}"[:500]) from exc

    def close(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            conn.close()

    # --- jobs ---------------------------------------------------------------------------
    def create(
        self,
        operation: str,
        options: dict[str, Any],
        clips: list[Path],
        callback: str | None = None,
        caller: str = "",
    ) -> Job:
        """A queued job holding the audio in `clips` (files), all in one transaction;
        TooManyRequests or StorageFull (and nothing stored) past the store's limits."""
        job_id = uuid.uuid4().hex
        size = sum(path.stat().st_size for path in clips)
        with self._tx() as cur:
            check_room(cur, self.limits, caller, size)
            cur.execute(
                "INSERT INTO speech_jobs (id, operation, options, clips, state, callback,"
                " created, caller, bytes) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, operation, json.dumps(options), len(clips), callback, self.clock(),
                 caller, size),
            )  # fmt: skip
            for clip, path in enumerate(clips):
                with path.open("rb") as audio:
                    for seq, chunk in enumerate(iter(lambda a=audio: a.read(CHUNK_BYTES), b"")):
                        cur.execute(
                            "INSERT INTO speech_job_audio (job_id, clip, seq, data)"
                            " VALUES (?, ?, ?, ?)",
                            (job_id, clip, seq, chunk),
                        )
        return self.get(job_id)

    def admit(self, caller: str, size: int) -> None:
        """Raise TooManyRequests or StorageFull if a job of `size` bytes by `caller` would
        pass the store's limits now (checked again when it is stored)."""
        with self._tx() as cur:
            check_room(cur, self.limits, caller, size)

    def expire(self, max_queued: float) -> int:
        """End failed (JobExpired) the jobs queued for more than `max_queued` seconds."""
        with self._tx() as cur:
            return expire_queued(cur, max_queued, self.clock())

    def get(self, job_id: str) -> Job:
        with self._tx() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM speech_jobs WHERE id = ?", (job_id,))
            row = cur.fetchone()
        if row is None:
            raise UnknownJob(f"no job {job_id[:40]!r} (never made, or removed after its retention)")
        return _job(row)

    def claim(self, owner: str, lease: float) -> Job | None:
        """The job to run next, now `owner`'s: a queued one, or a running one whose gateway
        stopped renewing its lease. Fair across callers: the oldest job of the callers
        with the fewest jobs running, so one caller's backlog never queues the others."""
        now = self.clock()
        pick = (
            "SELECT id FROM speech_jobs j WHERE (state = 'queued' OR state = 'running')"
            " AND (lease_until IS NULL OR lease_until < ?) ORDER BY (SELECT COUNT(*) FROM"
            " speech_jobs r WHERE r.state = 'running' AND r.lease_until >= ? AND"
            " COALESCE(r.caller, '') = COALESCE(j.caller, '')), created LIMIT 1"
        )
        if self.postgres:
            pick += " FOR UPDATE SKIP LOCKED"  # two gateways never claim the same job
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET state = 'running', owner = ?, lease_until = ?,"
                " started = COALESCE(started, ?), attempts = attempts + 1"
                f" WHERE id = ({pick}) RETURNING {_COLUMNS}",
                (owner, now + lease, now, now, now),
            )
            row = cur.fetchone()
        return None if row is None else _job(row)

    def heartbeat(self, job_id: str, owner: str, lease: float, progress: float) -> bool | None:
        """Renew `owner`'s lease: whether the job was cancelled, None if the lease was lost."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET lease_until = ?, progress = ? WHERE id = ? AND owner = ?"
                " AND state = 'running' RETURNING cancel_requested",
                (self.clock() + lease, progress, job_id, owner),
            )
            row = cur.fetchone()
        return None if row is None else bool(row[0])

    def finish(
        self,
        job_id: str,
        owner: str,
        state: str,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """End `owner`'s job as done, failed or cancelled; its audio goes, its callback is due.
        False (and nothing changed) when the job is no longer `owner`'s."""
        assert state in FINISHED
        now = self.clock()
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET state = ?, result = ?, error = ?, finished = ?,"
                " progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, owner = NULL,"
                " lease_until = NULL, callback_state = CASE WHEN callback IS NULL THEN NULL"
                " ELSE 'pending' END, callback_next = ? WHERE id = ? AND owner = ?"
                " AND state = 'running'",
                (state, _dump(result), _dump(error), now, state, now, job_id, owner),
            )
            ended = cur.rowcount == 1
            if ended:
                cur.execute("DELETE FROM speech_job_audio WHERE job_id = ?", (job_id,))
        return ended

    def release(self, job_id: str, owner: str, delay: float, unrun: bool = False) -> bool:
        """Give `owner`'s job back to the queue, to be claimed again after `delay` seconds;
        `unrun`: it was not attempted (its workers were away), so the attempt is not counted."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET state = 'queued', owner = NULL, lease_until = ?,"
                " attempts = attempts - ? WHERE id = ? AND owner = ? AND state = 'running'",
                (self.clock() + delay, int(unrun), job_id, owner),
            )
            return bool(cur.rowcount == 1)

    def cancel(self, job_id: str) -> Job:
        """A queued job ends cancelled now; a running one is asked to stop (its gateway ends
        it between segments); a finished one is left as it is."""
        now = self.clock()
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET state = 'cancelled', finished = ?, lease_until = NULL,"
                " callback_state = CASE WHEN callback IS NULL THEN NULL ELSE 'pending' END,"
                " callback_next = ? WHERE id = ? AND state = 'queued'",
                (now, now, job_id),
            )
            if cur.rowcount == 1:
                cur.execute("DELETE FROM speech_job_audio WHERE job_id = ?", (job_id,))
            cur.execute(
                "UPDATE speech_jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                (job_id,),
            )
        return self.get(job_id)

    def audio(self, job_id: str, clip: int) -> Iterator[bytes]:
        """The clip's bytes, chunk by chunk (one statement per chunk: memory stays small)."""
        seq = 0
        while True:
            with self._tx() as cur:
                cur.execute(
                    "SELECT data FROM speech_job_audio WHERE job_id = ? AND clip = ? AND seq = ?",
                    (job_id, clip, seq),
                )
                row = cur.fetchone()
            if row is None:
                return
            yield bytes(row[0])
            seq += 1

    def audio_bytes(self) -> int:
        """Bytes of audio held for all jobs (for tests and operators)."""
        with self._tx() as cur:
            cur.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM speech_job_audio")
            return int(cur.fetchone()[0])

    # --- callbacks and retention -------------------------------------------------------------
    def due_callback(self, hold: float) -> Job | None:
        """A finished job whose callback is due, held for `hold` seconds (another gateway
        takes it after that if this one dies before saying how the delivery went)."""
        now = self.clock()
        pick = (
            "SELECT id FROM speech_jobs WHERE callback_state = 'pending' AND callback_next <= ?"
            " ORDER BY callback_next LIMIT 1"
        )
        if self.postgres:
            pick += " FOR UPDATE SKIP LOCKED"
        with self._tx() as cur:
            cur.execute(
                f"UPDATE speech_jobs SET callback_next = ? WHERE id = ({pick})"
                f" RETURNING {_COLUMNS}",
                (now + hold, now),
            )
            row = cur.fetchone()
        return None if row is None else _job(row)

    def callback_result(self, job_id: str, delivered: bool, retry_in: float | None) -> None:
        """Record a delivery attempt: sent, to be retried in `retry_in` s, or given up (None)."""
        state = "sent" if delivered else "pending" if retry_in is not None else "failed"
        with self._tx() as cur:
            cur.execute(
                "UPDATE speech_jobs SET callback_state = ?, callback_attempts ="
                " callback_attempts + 1, callback_next = ? WHERE id = ?",
                (state, self.clock() + (retry_in or 0), job_id),
            )

    def callback_attempts(self, job_id: str) -> int:
        with self._tx() as cur:
            cur.execute("SELECT callback_attempts FROM speech_jobs WHERE id = ?", (job_id,))
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def sweep(self, retention: float) -> int:
        """Remove jobs finished more than `retention` seconds ago (their callback settled)."""
        with self._tx() as cur:
            cur.execute(
                "SELECT id FROM speech_jobs WHERE finished < ? AND (callback_state IS NULL"
                " OR callback_state <> 'pending')",
                (self.clock() - retention,),
            )
            ids = [row[0] for row in cur.fetchall()]
            for job_id in ids:
                cur.execute("DELETE FROM speech_job_audio WHERE job_id = ?", (job_id,))
                cur.execute("DELETE FROM speech_jobs WHERE id = ?", (job_id,))
        return len(ids)


class _Cursor:
    """A DB-API cursor taking `?` placeholders whatever the database."""

    def __init__(self, cur: Any, postgres: bool) -> None:
        self.cur, self.postgres = cur, postgres

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.cur.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self.cur.fetchall())

    @property
    def description(self) -> Any:
        return self.cur.description

    @property
    def rowcount(self) -> int:
        return int(self.cur.rowcount)


def _job(row: Any) -> Job:
    (job_id, operation, options, clips, state, progress, result, error, callback, created,
     started, finished, owner, attempts, cancel) = row  # fmt: skip
    return Job(
        job_id, operation, json.loads(options), clips, state, float(progress),
        _load(result), _load(error), callback, created, started, finished, owner, attempts,
        bool(cancel),
    )  # fmt: skip


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
