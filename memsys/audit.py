"""The audit trail: who did what, when, to what, with what result (imports started,
cancelled, resumed, retried; memories deleted; cache repaired or cleared; settings
changed; refused actions). Kept in the job database (SQLite or PostgreSQL), in a table the
database itself keeps append-only (triggers refuse UPDATE and DELETE: the table is made by
memsys/jobs/migrations.py), so nothing in memsys, the dashboard included, can edit or
remove a record. Details are scrubbed of secrets before storing.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from memsys.jobs.schema import JobDatabaseLocation, open_job_database
from memsys.logs import event, get_logger, scrub_text, scrub_value

log = get_logger("audit")

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
    """The audit table of one job database. Thread-safe and process-safe (one INSERT per
    record, in its own transaction). A database that cannot be written raises
    JobStoreError; it is opened on first use, not here, so an engine on a read-only data
    directory still starts (and says what is wrong) rather than failing to exist."""

    def __init__(self, location: JobDatabaseLocation, timeout: float = 30.0) -> None:
        self._db = open_job_database(location, timeout)
        self.timeout = timeout

    @property
    def path(self) -> Path | None:
        """The SQLite file; None on PostgreSQL."""
        return self._db.path

    def close(self) -> None:
        self._db.close()

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
        with self._db.transaction() as db:
            row_id = int(db.execute(
                "INSERT INTO audit (at, actor, action, target, outcome, details) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (now, actor, str(action), target, str(outcome), json.dumps(clean, ensure_ascii=False, default=str)),
            ).fetchone()[0])
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
        with self._db.transaction() as db:
            db.executemany("INSERT INTO audit (at, actor, action, target, outcome, details) VALUES (?, ?, ?, ?, ?, ?)", rows)
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
        rows = self._db.rows(sql, (*params, limit))
        return [
            AuditRecord(r[0], dt.datetime.fromtimestamp(r[1], dt.timezone.utc), r[2], r[3], r[4], r[5], json.loads(r[6]))
            for r in rows
        ]
