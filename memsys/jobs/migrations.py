"""The job database's schema as numbered migrations, one list for SQLite and PostgreSQL,
recorded in its `schema_migrations` table (version, name, checksum, when). They run when
the database is first used by a process, and by `memsys db upgrade`; each is idempotent,
and all pending ones run in one transaction taken by one process at a time.

The additive migrations (the job tables, the columns added since the first release) are
built from memsys/jobs/schema.py's `_SCHEMA` and `_ADDED_COLUMNS`: a table or column
appended there changes the migration's checksum, so it runs again (creating only what is
missing). A change that is not an addition gets a new numbered migration at the end.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from memsys.jobs.postgres import Connection, postgres_ddl

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at REAL NOT NULL
);
"""

# The audit trail (memsys/audit.py): append-only, which each database enforces itself.
_AUDIT = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
"""
_AUDIT_SQLITE = _AUDIT + """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
_AUDIT_POSTGRES = postgres_ddl(_AUDIT) + """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"""
# SQLite keeps a rowid on every table, and a job's warnings are read in that order; on
# PostgreSQL an identity column of that name keeps it.
_WARNINGS_ORDER_POSTGRES = "ALTER TABLE warnings ADD COLUMN IF NOT EXISTS rowid BIGINT GENERATED ALWAYS AS IDENTITY;"


@dataclass(frozen=True)
class Migration:
    """One numbered step of the schema: how it runs on each database, and the text its
    checksum is taken from (a recorded step whose checksum changed runs again)."""

    version: int
    name: str
    sqlite: Callable[[sqlite3.Connection], None] = field(repr=False)
    postgres: Callable[[Connection], None] = field(repr=False)
    source: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def sqlite_script(db: sqlite3.Connection, script: str) -> None:
    """Run a script's statements one by one (executescript would commit the transaction)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _add_columns_sqlite(added: Mapping[str, Sequence[tuple[str, str]]]) -> Callable[[sqlite3.Connection], None]:
    def run(db: sqlite3.Connection) -> None:
        for table, columns in added.items():
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    return run


def _add_columns_postgres(added: Mapping[str, Sequence[tuple[str, str]]]) -> Callable[[Connection], None]:
    def run(db: Connection) -> None:
        for table, columns in added.items():
            for name, decl in columns:
                db.script(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {postgres_ddl(decl)}")
    return run


def _nothing(db: Any) -> None:
    """A step this database needs no statement for."""


def job_database_migrations(schema: str, added_columns: Mapping[str, Sequence[tuple[str, str]]],
                            file_reads: str) -> tuple[Migration, ...]:
    """Every migration of the job database, in order."""
    pg_schema = postgres_ddl(schema)
    return (
        Migration(1, "job tables", lambda db: sqlite_script(db, schema), lambda db: db.script(pg_schema), schema),
        Migration(2, "columns added since the first release", _add_columns_sqlite(added_columns),
                  _add_columns_postgres(added_columns), repr(sorted((t, tuple(c)) for t, c in added_columns.items()))),
        Migration(3, "audit trail", lambda db: sqlite_script(db, _AUDIT_SQLITE), lambda db: db.script(_AUDIT_POSTGRES),
                  _AUDIT_SQLITE + _AUDIT_POSTGRES),
        Migration(4, "warnings keep their order", _nothing, lambda db: db.script(_WARNINGS_ORDER_POSTGRES),
                  _WARNINGS_ORDER_POSTGRES),
        Migration(5, "file reads spread over workers", lambda db: sqlite_script(db, file_reads),
                  lambda db: db.script(postgres_ddl(file_reads)), file_reads),
    )


def recorded(db: Any) -> dict[int, str]:
    """version -> checksum of the migrations the database has recorded ({} before any)."""
    return {int(r[0]): str(r[1]) for r in db.execute("SELECT version, checksum FROM schema_migrations").fetchall()}


def pending(migrations: Sequence[Migration], done: Mapping[int, str]) -> list[Migration]:
    return [m for m in migrations if done.get(m.version) != m.checksum]


def upgrade(db: Any, dialect: str, migrations: Sequence[Migration]) -> list[Migration]:
    """Run the migrations the database has not recorded (with this checksum), inside the
    caller's transaction, and record them; returns those that ran."""
    if dialect == "sqlite":
        sqlite_script(db, LEDGER)
    else:
        db.script(postgres_ddl(LEDGER))
    ran = pending(migrations, recorded(db))
    for migration in ran:
        (migration.sqlite if dialect == "sqlite" else migration.postgres)(db)
        db.execute("INSERT OR REPLACE INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                   (migration.version, migration.name, migration.checksum, time.time()))
    return ran


def upgrade_sqlite(db: sqlite3.Connection, migrations: Sequence[Migration]) -> list[Migration]:
    """Bring a SQLite file up to date on an autocommit connection: a file already up to date
    is only read (opening it never waits for another process's write); otherwise the
    migrations run in one BEGIN IMMEDIATE transaction."""
    try:
        if not pending(migrations, recorded(db)):
            return []
    except sqlite3.OperationalError:
        pass  # no ledger yet: a new file, or one made before migrations were recorded
    db.execute("BEGIN IMMEDIATE")
    try:
        ran = upgrade(db, "sqlite", migrations)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return ran
