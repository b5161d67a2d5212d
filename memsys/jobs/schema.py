"""The job database's tables, and the base its record classes share: a SQLite file in the
data directory (memsys/jobs/connection.py), or a PostgreSQL database shared by several
machines when MEMSYS_DATABASE_URL names one (memsys/jobs/postgres.py). Either is
thread-safe and process-safe, every change one transaction, reads never wait behind a
write; the schema reaches either through the same migrations (memsys/jobs/migrations.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from memsys.jobs.connection import SqliteFile
from memsys.jobs.migrations import LEDGER, Migration, job_database_migrations, upgrade, upgrade_sqlite
from memsys.jobs.postgres import PostgresDatabase, is_postgres_url, table_shapes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    planned INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    written INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    cache_hits INTEGER NOT NULL DEFAULT 0,
    cache_misses INTEGER NOT NULL DEFAULT 0,
    batches_done INTEGER NOT NULL DEFAULT 0,
    current_batch INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    heartbeat REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    run_started_at REAL,
    run_processed_start INTEGER NOT NULL DEFAULT 0,
    ocr_pages INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uuid TEXT,
    memory TEXT,
    item TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    error_type TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX IF NOT EXISTS items_by_state ON items (job_id, state, seq);
CREATE INDEX IF NOT EXISTS items_by_uuid ON items (job_id, uuid);
CREATE TABLE IF NOT EXISTS warnings (
    job_id TEXT NOT NULL,
    item TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS warnings_by_job ON warnings (job_id);
CREATE TABLE IF NOT EXISTS batches (
    job_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    size INTEGER NOT NULL,
    embed_seconds REAL NOT NULL,
    write_seconds REAL NOT NULL,
    seconds REAL NOT NULL,
    cache_hits INTEGER NOT NULL,
    cache_misses INTEGER NOT NULL,
    written INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    error_type TEXT NOT NULL DEFAULT '',
    updated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, batch_no)
);
CREATE TABLE IF NOT EXISTS documents (
    job_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    project TEXT NOT NULL,
    repo TEXT NOT NULL,
    source_file TEXT NOT NULL,
    document_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    PRIMARY KEY (job_id, document_id)
);
CREATE INDEX IF NOT EXISTS documents_by_id ON documents (document_id);
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    spec TEXT NOT NULL,
    defaults TEXT NOT NULL,
    schedule TEXT NOT NULL DEFAULT '',
    paused INTEGER NOT NULL DEFAULT 0,
    credential_env TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    last_sync_at REAL,
    last_success_at REAL,
    next_due_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    cursor TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS source_entries (
    source_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER,
    documents TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (source_id, key)
);
CREATE TABLE IF NOT EXISTS source_syncs (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    trigger TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    job_id TEXT NOT NULL DEFAULT '',
    listed INTEGER NOT NULL DEFAULT 0,
    new INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    pending TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS source_syncs_by_source ON source_syncs (source_id, started_at);
CREATE TABLE IF NOT EXISTS document_removals (
    document_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    repo TEXT NOT NULL,
    source_file TEXT NOT NULL,
    removed_at REAL NOT NULL,
    removed_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS remembered_choices (
    who TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (who, name)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    projects TEXT NOT NULL DEFAULT '[]',
    rate_per_minute INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    last_used_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS retention (
    job_id TEXT PRIMARY KEY,
    spool_removed_at REAL,
    texts_pruned_at REAL
);
CREATE TABLE IF NOT EXISTS item_stages (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS batch_leases (
    job_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    seqs TEXT NOT NULL,
    state TEXT NOT NULL,
    token INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    expires_at REAL,
    done_by TEXT NOT NULL DEFAULT '',
    taken_over INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, batch_no)
);
CREATE INDEX IF NOT EXISTS batch_leases_by_state ON batch_leases (state, expires_at);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL,
    stopped_at REAL,
    batches_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS document_claims (
    document_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
"""
# A job's files read by several `memsys worker` processes (memsys/workers/reads.py): one
# lease row per part of the files (read_no 0: the merge of the parts), and what each part's
# reader stored, under the token of its lease. Made by its own numbered migration.
_FILE_READS = """
CREATE TABLE IF NOT EXISTS file_reads (
    job_id TEXT NOT NULL,
    read_no INTEGER NOT NULL,
    paths TEXT NOT NULL,
    state TEXT NOT NULL,
    token INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    expires_at REAL,
    done_by TEXT NOT NULL DEFAULT '',
    taken_over INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    ocr_pages INTEGER NOT NULL DEFAULT 0,
    pieces INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, read_no)
);
CREATE INDEX IF NOT EXISTS file_reads_by_state ON file_reads (state, expires_at);
CREATE TABLE IF NOT EXISTS read_pieces (
    job_id TEXT NOT NULL,
    read_no INTEGER NOT NULL,
    token INTEGER NOT NULL,
    n INTEGER NOT NULL,
    piece TEXT NOT NULL,
    PRIMARY KEY (job_id, read_no, token, n)
);
"""
# Columns added after the first release: a job database made before them gets them on open.
_ADDED_COLUMNS = {
    "jobs": (("ocr_pages", "INTEGER NOT NULL DEFAULT 0"), ("updated", "INTEGER NOT NULL DEFAULT 0"),
             ("removed", "INTEGER NOT NULL DEFAULT 0"),
             # Where a job's time went outside its batches (memsys/jobs/job_timings.py).
             ("read_seconds", "REAL NOT NULL DEFAULT 0"), ("lookup_seconds", "REAL NOT NULL DEFAULT 0"),
             ("index_wait_seconds", "REAL NOT NULL DEFAULT 0")),
    "batches": (("updated", "INTEGER NOT NULL DEFAULT 0"),
                # A batch's time split by stage, and the tokens it sent (memsys/jobs/metrics.py).
                ("lookup_seconds", "REAL NOT NULL DEFAULT 0"), ("embedder_seconds", "REAL NOT NULL DEFAULT 0"),
                ("provider_wait_seconds", "REAL NOT NULL DEFAULT 0"), ("store_wait_seconds", "REAL NOT NULL DEFAULT 0"),
                ("tokens", "INTEGER NOT NULL DEFAULT 0")),
}



# A job database is named by a SQLite file's path or a postgresql:// URL.
JobDatabaseLocation = Union[Path, str]
JobDatabase = Union[SqliteFile, PostgresDatabase]


def migrations() -> tuple[Migration, ...]:
    """The job database's migrations, from the tables above."""
    return job_database_migrations(_SCHEMA, _ADDED_COLUMNS, _FILE_READS)


def open_job_database(location: JobDatabaseLocation, timeout: float = 20.0) -> JobDatabase:
    """The job database at `location` (nothing is opened until it is first used; then its
    schema is brought up to date)."""
    steps = migrations()
    if is_postgres_url(location):
        return PostgresDatabase(str(location), timeout, table_shapes(_SCHEMA + _FILE_READS + LEDGER, _ADDED_COLUMNS),
                                lambda db: upgrade(db, "postgresql", steps))
    return SqliteFile(Path(location), timeout, lambda db: upgrade_sqlite(db, steps))


class JobTables:
    """The job database; `JobStore` (memsys/jobs/database.py) is built from the classes
    that share it, one per concern."""

    def __init__(self, location: JobDatabaseLocation, timeout: float = 20.0) -> None:
        self._file = open_job_database(location, timeout)
        self._tx = self._file.transaction
        self._rows = self._file.rows
        self._one = self._file.one

    @property
    def path(self) -> Path | None:
        """The SQLite file; None on PostgreSQL."""
        return self._file.path

    @property
    def dialect(self) -> str:
        return self._file.dialect

    @property
    def timeout(self) -> float:
        return self._file.timeout

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class SchemaState:
    """What `upgrade_job_database` did: the migrations it ran now, and every one the
    database has recorded as (version, name, when)."""

    ran: tuple[Migration, ...]
    recorded: tuple[tuple[int, str, float], ...]


def upgrade_job_database(location: JobDatabaseLocation, timeout: float = 20.0) -> SchemaState:
    """Bring the job database at `location` up to date (`memsys db upgrade`; every process
    does the same when it first uses it). Safe to run at any time, as often as wanted."""
    database = open_job_database(location, timeout)
    try:
        with database.transaction():
            pass  # opening it for writing runs what is pending
        recorded = database.rows("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        return SchemaState(tuple(database.applied), tuple((int(r[0]), str(r[1]), float(r[2])) for r in recorded))
    finally:
        database.close()
