"""The audit trail: who did what, when, to what, with what result (imports started,
cancelled, resumed, retried; memories deleted; cache repaired or cleared; settings
changed; refused actions). Kept in the job database, in a table SQLite itself keeps
append-only (triggers refuse UPDATE and DELETE), so nothing in memsys, the dashboard
included, can edit or remove a record. Details are scrubbed of secrets before storing.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from memsys.jobs import explain_db_error, open_database
from memsys.logs import event, get_logger, scrub_text, scrub_value

log = get_logger("audit")

_SCHEMA = """
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
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


class AuditAction(enum.StrEnum):
    IMPORT_STARTED = "import.started"
    IMPORT_CANCELLED = "import.cancelled"
    IMPORT_RESUMED = "import.resumed"
    IMPORT_RETRIED = "import.retried"
    MEMORIES_DELETED = "memories.deleted"
    MEMORIES_RESTORED = "memories.restored"
    CACHE_REPAIRED = "cache.repaired"
    CACHE_CLEARED = "cache.cleared"
    SETTINGS_CHANGED = "settings.changed"
    REEMBED_STARTED = "reembed.started"
    COLLECTION_DROPPED = "collection.dropped"
    SERVER_STARTED = "server.started"
    SERVER_STOPPED = "server.stopped"
    SOURCE_ADDED = "source.added"
    SOURCE_CHANGED = "source.changed"
    SOURCE_SYNCED = "source.synced"
    SOURCE_REMOVED = "source.removed"
    MEMORIES_WRITTEN = "memories.written"
    API_TOKEN_CREATED = "api_token.created"
    API_TOKEN_REVOKED = "api_token.revoked"
    BACKUP_CREATED = "backup.created"
    BACKUP_RESTORED = "backup.restored"
    BACKUP_DELETED = "backup.deleted"
    JOBS_PRUNED = "jobs.pruned"
    CACHE_PRUNED = "cache.pruned"


class AuditOutcome(enum.StrEnum):
    DONE = "done"
    REFUSED = "refused"  # memsys said no (an empty delete filter, a job already running, a role)
    FAILED = "failed"  # it was allowed, but did not work (Weaviate down)


@dataclass(frozen=True)
class AuditEntry:
    """One record to append with `AuditTrail.record_many`."""

    action: AuditAction | str
    actor: str
    target: str = ""
    outcome: AuditOutcome | str = AuditOutcome.DONE
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)


class AuditTrail:
    """The audit table of one job database. Thread-safe and process-safe (WAL, one
    INSERT per record). A database that cannot be written raises JobStoreError."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        # Opened on first use, not here: an engine on a read-only data directory still
        # starts (and says what is wrong) rather than failing to exist.
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement (call with `_lock` held). A database that cannot be opened or
        written raises JobStoreError with a plain reason, and the connection is dropped so
        the next call opens it afresh (a data directory writable again)."""
        try:
            if self._db is None:
                self._db = open_database(self.path, self.timeout, _SCHEMA)
            return self._db.execute(sql, params)
        except (sqlite3.Error, OSError) as e:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise explain_db_error(e, self.path, self.timeout) from e

    def record(
        self,
        action: AuditAction | str,
        actor: str,
        *,
        target: str = "",
        outcome: AuditOutcome | str = AuditOutcome.DONE,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record (and log it); returns it as stored."""
        clean = scrub_value(dict(details or {}))
        now = time.time()
        actor, target = scrub_text(actor), scrub_text(target)
        with self._lock:
            cur = self._execute(
                "INSERT INTO audit (at, actor, action, target, outcome, details) VALUES (?, ?, ?, ?, ?, ?)",
                (now, actor, str(action), target, str(outcome), json.dumps(clean, ensure_ascii=False, default=str)),
            )
            row_id = int(cur.lastrowid or 0)
        level = 30 if outcome != AuditOutcome.DONE else 20  # WARNING for refused and failed, else INFO
        log.log(level, "%s %s %s%s", actor, action, outcome, f" ({target})" if target else "",
                extra={**event(f"audit.{action}", actor=actor, outcome=str(outcome), target=target, **clean),
                       "job_id": target if str(action).startswith("import.") and target else None})
        return AuditRecord(row_id, dt.datetime.fromtimestamp(now, dt.timezone.utc), actor, str(action), target,
                           str(outcome), clean)

    def record_many(self, entries: Sequence["AuditEntry"]) -> None:
        """Append several records in one transaction (one write to disk for all: the write
        queue records each caller of a batch at once), and log each."""
        now = time.time()
        rows = [(now, scrub_text(e.actor), str(e.action), scrub_text(e.target), str(e.outcome),
                 json.dumps(scrub_value(dict(e.details)), ensure_ascii=False, default=str)) for e in entries]
        if not rows:
            return
        with self._lock:
            self._execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    self._execute("INSERT INTO audit (at, actor, action, target, outcome, details) VALUES (?, ?, ?, ?, ?, ?)",
                                  row)
                self._execute("COMMIT")
            except BaseException:
                if self._db is not None and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        for _, actor, action, target, outcome, _ in rows:
            level = 30 if outcome != AuditOutcome.DONE else 20
            log.log(level, "%s %s %s%s", actor, action, outcome, f" ({target})" if target else "",
                    extra=event(f"audit.{action}", actor=actor, outcome=outcome, target=target))

    def records(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
        limit: int = 500,
    ) -> list[AuditRecord]:
        """The newest `limit` records matching every given field, newest first."""
        where, params = [], []
        for column, value in (("action", action), ("actor", actor), ("target", target)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append((since if since.tzinfo else since.astimezone()).timestamp())
        sql = "SELECT id, at, actor, action, target, outcome, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._execute(sql, (*params, limit)).fetchall()
        return [
            AuditRecord(r[0], dt.datetime.fromtimestamp(r[1], dt.timezone.utc), r[2], r[3], r[4], r[5], json.loads(r[6]))
            for r in rows
        ]
