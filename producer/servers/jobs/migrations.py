"""The job store's schema: numbered migrations, applied in order when a store is opened.

`speech_schema_versions` records each migration applied (its number and when); a store's
version is the highest. Opening a store applies, in one transaction, every migration
above its version, so gateways of several releases can be upgraded one by one: the first
to start on the new release migrates, the others find the work done (on PostgreSQL an
advisory lock makes the second wait for the first; on SQLite `BEGIN IMMEDIATE` does).
A store whose version is above the code's is refused (StoreTooNew): an older gateway
never writes to a schema it does not know.

Stores made before the version table existed hold the tables of migration 1: they are
recognized as version 1 and kept, once the columns added to the jobs table since its
first release are there too.

A new migration goes at the end of MIGRATIONS with the next number, and is never edited
once released: a store that applied it will not apply it again.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from producer.errors import StoreTooNew

VERSIONS_TABLE = "speech_schema_versions"
# Any constant both sides agree on: the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK = 0x5EEC40B5


class Cursor(Protocol):
    """What a migration runs on: the store's cursor (`?` placeholders, any database)."""

    postgres: bool

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None: ...

    def fetchone(self) -> Any: ...

    @property
    def description(self) -> Any: ...


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    # SQL run in order; `{blob}` is the binary type (BYTEA in PostgreSQL, BLOB in SQLite).
    statements: tuple[str, ...]


_JOBS = """CREATE TABLE speech_jobs (
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
    callback_next DOUBLE PRECISION,
    caller TEXT,
    bytes BIGINT NOT NULL DEFAULT 0)"""
_AUDIO = """CREATE TABLE speech_job_audio (
    job_id TEXT NOT NULL,
    clip INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (job_id, clip, seq))"""
_INDEX = "CREATE INDEX speech_jobs_state ON speech_jobs (state, lease_until)"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, their audio in chunks, and the index claims use", (_JOBS, _AUDIO, _INDEX)),
)
LATEST = MIGRATIONS[-1].version

# Columns added to the jobs table before the store had versions: an unversioned store
# made by an older release may lack them; they are added before it is called version 1.
_ADDED_BEFORE_VERSIONS = (("caller", "TEXT"), ("bytes", "BIGINT NOT NULL DEFAULT 0"))


def migrate(cur: Cursor, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the store `cur` is on to the last of `migrations`; its version before.

    Run inside one transaction: a migration that fails leaves the store as it was."""
    _check_order(migrations)
    if cur.postgres:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (version INTEGER PRIMARY KEY,"
        " applied DOUBLE PRECISION NOT NULL)"
    )
    before = version(cur)
    if before == 0 and _has_table(cur, "speech_jobs"):
        before = _adopt(cur)
    latest = migrations[-1].version if migrations else 0
    if before > latest:
        raise StoreTooNew(
            f"the job store's schema is at version {before}, this gateway knows versions up"
            f" to {latest}: upgrade this gateway to the release of the others sharing the"
            " store, or give it a store of its own (SPEECH_JOBS_DB)"
        )
    blob = "BYTEA" if cur.postgres else "BLOB"
    for step in migrations:
        if step.version > before:
            for sql in step.statements:
                cur.execute(sql.format(blob=blob))
            _record(cur, step.version)
    return before


def version(cur: Cursor) -> int:
    """The highest migration applied to the store (0: none recorded)."""
    cur.execute(f"SELECT COALESCE(MAX(version), 0) FROM {VERSIONS_TABLE}")
    return int(cur.fetchone()[0])


def _adopt(cur: Cursor) -> int:
    """A store made before versions: complete its jobs table, and record it as version 1."""
    cur.execute("SELECT * FROM speech_jobs WHERE 1 = 0")
    have = {column[0] for column in cur.description}
    for name, kind in _ADDED_BEFORE_VERSIONS:
        if name not in have:
            cur.execute(f"ALTER TABLE speech_jobs ADD COLUMN {name} {kind}")
    _record(cur, 1)
    return 1


def _record(cur: Cursor, number: int) -> None:
    cur.execute(
        f"INSERT INTO {VERSIONS_TABLE} (version, applied) VALUES (?, ?)", (number, time.time())
    )


def _has_table(cur: Cursor, name: str) -> bool:
    if cur.postgres:
        cur.execute("SELECT to_regclass(?) IS NOT NULL", (name,))
    else:
        cur.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return bool(cur.fetchone()[0])


def _check_order(migrations: Sequence[Migration]) -> None:
    numbers = [step.version for step in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3... in order, got {numbers}")
