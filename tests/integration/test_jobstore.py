"""The job store on a real SQLite file and a real PostgreSQL schema: claims are exclusive,
leases expire, a gateway whose lease was taken over can write nothing; a store made by an
older release is migrated and keeps its jobs, one made by a newer release is refused.

Leases run on a clock the tests move (FakeClock): a lapse takes no real time."""

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producer.errors import StoreTooNew, UnknownJob
from producer.servers.jobs.migrations import LATEST, MIGRATIONS, Migration
from producer.servers.jobs.runner import sign, verify
from producer.servers.jobs.store import JobStore
from tests.clients.jobs_helpers import postgres_schema


class FakeClock:
    """Wall-clock seconds that move only when a test moves them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL on an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def stores(database: str, tmp_path: Path, clock: FakeClock) -> Iterator[tuple[JobStore, JobStore]]:
    """Two stores on the same database, as two gateways have them, on the same clock."""
    one, two = JobStore(database, tmp_path, clock=clock), JobStore(database, tmp_path, clock=clock)
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
    stores: tuple[JobStore, JobStore], clip: Path, clock: FakeClock
) -> None:
    one, two = stores
    job = one.create("transcribe", {"parallel": 2}, [clip], "http://127.0.0.1:9/hook")
    assert b"".join(two.audio(job.id, 0)) == clip.read_bytes()
    assert one.claim("a", lease=0.5) is not None
    assert two.claim("b", lease=0.5) is None  # held
    clock.advance(0.4)
    assert one.heartbeat(job.id, "a", 0.5, 0.3) is False  # renewed, not cancelled
    clock.advance(0.4)
    assert two.claim("b", lease=0.5) is None  # 0.8 s after the claim, held by the renewal
    clock.advance(0.2)  # 0.6 s since the renewal: the lease has lapsed
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
    clock.advance(1)
    assert one.sweep(retention=0) == 1
    with pytest.raises(UnknownJob):
        two.get(job.id)


def test_cancel_ends_a_queued_job_and_flags_a_running_one(
    stores: tuple[JobStore, JobStore], clip: Path, clock: FakeClock
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
    clock.advance(1)
    assert one.sweep(retention=0) == 1  # the queued job, which had no callback
    two.callback_result(running.id, False, None)  # given up
    assert one.sweep(retention=0) == 1


def test_a_store_given_no_clock_tells_wall_clock_time(tmp_path: Path, clip: Path) -> None:
    store = JobStore("", tmp_path)
    before = time.time()
    job = store.create("asr", {}, [clip])
    assert before <= job.created <= time.time()
    claimed = store.claim("a", lease=30)
    assert claimed is not None and before <= (claimed.started or 0) <= time.time()


# --- the schema: versions and migrations ---------------------------------------------------
# The tables as the releases before schema versions made them (no version table): kept
# here as they were, whatever the migrations become.
UNVERSIONED_JOBS = """CREATE TABLE IF NOT EXISTS speech_jobs (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    options TEXT NOT NULL,
    clips INTEGER NOT NULL,
    state TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    callback TEXT,
    created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION,
    finished DOUBLE PRECISION,
    owner TEXT,
    lease_until DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    callback_state TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_next DOUBLE PRECISION{added})"""
ADDED_COLUMNS = """,
    caller TEXT,
    bytes BIGINT NOT NULL DEFAULT 0"""
UNVERSIONED_AUDIO = """CREATE TABLE IF NOT EXISTS speech_job_audio (
    job_id TEXT NOT NULL,
    clip INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (job_id, clip, seq))"""
UNVERSIONED_INDEX = (
    "CREATE INDEX IF NOT EXISTS speech_jobs_state ON speech_jobs (state, lease_until)"
)
OLD_JOB = "0123456789abcdef0123456789abcdef"


def _run_sql(url: str, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
    """Run `statements` on the store's database directly, as another release would; the
    rows of the last one that answers rows."""
    if url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        mark: Callable[[str], str] = lambda sql: sql  # noqa: E731
    else:
        import psycopg

        conn = psycopg.connect(url)
        mark = lambda sql: sql.replace("?", "%s")  # noqa: E731
    rows: list[Any] = []
    try:
        cur = conn.cursor()
        for sql, params in statements:
            cur.execute(mark(sql), params)
            if cur.description is not None:
                rows = list(cur.fetchall())
        conn.commit()
    finally:
        conn.close()
    return rows


def _unversioned_store(url: str, *, added_columns: bool = True) -> None:
    """The tables and one queued job with its audio, as the code before versions left them."""
    blob = "BLOB" if url.startswith("sqlite") else "BYTEA"
    job = (
        "INSERT INTO speech_jobs (id, operation, options, clips, state, created)"
        " VALUES (?, 'asr', '{\"language\": \"en\"}', 1, 'queued', ?)"
    )
    _run_sql(
        url,
        (UNVERSIONED_JOBS.format(added=ADDED_COLUMNS if added_columns else ""), ()),
        (UNVERSIONED_AUDIO.format(blob=blob), ()),
        (UNVERSIONED_INDEX, ()),
        (job, (OLD_JOB, time.time())),
        ("INSERT INTO speech_job_audio (job_id, clip, seq, data) VALUES (?, 0, 0, ?)",
         (OLD_JOB, b"RIFF-old")),
    )  # fmt: skip


def _versions(url: str) -> list[int]:
    rows = _run_sql(url, ("SELECT version FROM speech_schema_versions ORDER BY version", ()))
    return [row[0] for row in rows]


def test_a_store_made_before_versions_is_version_1_and_keeps_its_jobs(
    database: str, tmp_path: Path
) -> None:
    # Given a store made by the code before schema versions, holding a queued job
    _unversioned_store(database)
    # When a gateway opens it
    store = JobStore(database, tmp_path)
    # Then it is recorded as version 1 (nothing else changed) and the job runs as before
    assert _versions(database) == [1] == [LATEST]
    job = store.get(OLD_JOB)
    assert (job.state, job.options) == ("queued", {"language": "en"})
    assert b"".join(store.audio(OLD_JOB, 0)) == b"RIFF-old"
    claimed = store.claim("a", lease=30)
    assert claimed is not None and claimed.id == OLD_JOB
    store.close()
    # And opening it again changes nothing
    JobStore(database, tmp_path).close()
    assert _versions(database) == [1]


def test_a_store_older_still_gets_the_columns_added_before_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    _unversioned_store(url, added_columns=False)
    # Given a store from before the job limits (no caller, no bytes), when it is opened
    store = JobStore(url, tmp_path)
    # Then it is version 1, with the columns the limits count by, and its job kept
    assert _versions(url) == [1]
    assert _run_sql(url, ("SELECT caller, bytes FROM speech_jobs", ())) == [(None, 0)]
    assert store.get(OLD_JOB).state == "queued"
    store.close()


def test_a_new_store_is_made_by_the_migrations(database: str, tmp_path: Path, clip: Path) -> None:
    store = JobStore(database, tmp_path)
    assert _versions(database) == [step.version for step in MIGRATIONS]
    assert store.get(store.create("asr", {}, [clip]).id).state == "queued"
    store.close()


def test_an_older_store_is_migrated_in_order_and_keeps_its_jobs(
    database: str, tmp_path: Path
) -> None:
    # Given a version 1 store holding a job, and code with two more migrations, the
    # third needing the second
    _unversioned_store(database)
    JobStore(database, tmp_path).close()
    later = (
        *MIGRATIONS,
        Migration(2, "a note per job", ("ALTER TABLE speech_jobs ADD COLUMN note TEXT",)),
        Migration(3, "notes filled in", ("UPDATE speech_jobs SET note = 'from ' || operation",)),
    )
    # When the newer code opens the store
    store = JobStore(database, tmp_path, migrations=later)
    # Then both ran, in order, and the job is still there
    assert _versions(database) == [1, 2, 3]
    assert _run_sql(database, ("SELECT note FROM speech_jobs WHERE id = ?", (OLD_JOB,))) == [
        ("from asr",)
    ]
    assert store.get(OLD_JOB).state == "queued"
    assert b"".join(store.audio(OLD_JOB, 0)) == b"RIFF-old"
    store.close()


def test_a_store_newer_than_the_code_is_refused(database: str, tmp_path: Path) -> None:
    # Given a store a newer release has migrated past this code's last migration
    JobStore(database, tmp_path).close()
    _run_sql(
        database,
        ("INSERT INTO speech_schema_versions (version, applied) VALUES (?, ?)",
         (LATEST + 1, time.time())),
    )  # fmt: skip
    # When this code opens it, it is refused, naming both versions, and nothing is changed
    with pytest.raises(StoreTooNew, match=f"version {LATEST + 1}.* up to {LATEST}"):
        JobStore(database, tmp_path)
    assert _versions(database) == [*range(1, LATEST + 1), LATEST + 1]


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    skipped = (*MIGRATIONS, Migration(LATEST + 2, "a gap", ("SELECT 1",)))
    with pytest.raises(ValueError, match="numbered 1, 2, 3"):
        JobStore("", tmp_path, migrations=skipped)


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
