"""The job store (SQLite, WAL, in the data directory) and the job runner.

A job's items are planned into the store before any is processed, so a job can resume
after any stop: every item is pending, written, unchanged or failed (with its reason),
and the counts always add up to the total. The runner is one background thread per
process; it never touches the UI. Cancelling works across processes (a flag in the store).
Database trouble (a lock held by another process, a full disk, a read-only data
directory) raises `JobStoreError` with a plain reason, never leaves a lock held, and the
same process carries on once the cause is gone.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import queue
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

from memsys.embeddings.budget import BudgetStatus
from memsys.errors import JobStoreError, scrub
from memsys.logs import get_logger
from memsys.metrics import BatchMetrics, BatchRecord
from memsys.models import document_id

log = get_logger("jobs")

ACTIVE_STATES = ("queued", "planning", "running", "cancelling")
FINAL_STATES = ("completed", "cancelled", "failed")
ITEM_STATES = ("pending", "written", "updated", "unchanged", "failed")
FAILED_PAGE = 500  # failed items are read this many at a time, never all at once
# A stop that could not be written (full disk, ...) is tried again this often.
_RECORD_RETRY_SECONDS = 2.0

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
"""
# Columns added after the first release: a job database made before them gets them on open.
_ADDED_COLUMNS = {
    "jobs": (("ocr_pages", "INTEGER NOT NULL DEFAULT 0"), ("updated", "INTEGER NOT NULL DEFAULT 0"),
             ("removed", "INTEGER NOT NULL DEFAULT 0")),
    "batches": (("updated", "INTEGER NOT NULL DEFAULT 0"),),
}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str, heartbeat: float | None) -> bool:
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # Another machine: trust its heartbeat for two minutes.
    return heartbeat is not None and time.time() - heartbeat < 120


@dataclass(frozen=True)
class JobProgress:
    """A job as the UI and CLI show it. `state` is derived: a job whose process died
    while it ran is "interrupted" (resume it)."""

    job_id: str
    state: str
    total: int
    written: int
    unchanged: int
    failed: int
    processed: int
    items_per_second: float
    eta_seconds: float | None
    current_batch: int
    batches_done: int
    cache_hits: int
    cache_misses: int
    cache_hit_rate: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str
    planned: bool
    request: dict[str, Any]
    ocr_pages: int = 0  # scanned pages read by OCR while planning (reading the files)
    # Same content, new metadata (tags, source, place in the document): rewritten in place.
    updated: int = 0
    # Stored memories the job removed: chunks its documents no longer have, and with
    # `mirror`, documents gone from the imported folder. Not items, so not in `total`.
    removed: int = 0
    # The embedding provider's rate-limit budget while the job runs in this process.
    budget: BudgetStatus | None = None

    @property
    def pending(self) -> int:
        return max(0, self.total - self.processed)

    @property
    def fraction(self) -> float:
        return self.processed / self.total if self.total else (1.0 if self.state in FINAL_STATES else 0.0)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_resumable(self) -> bool:
        return self.state in ("interrupted", "cancelled", "failed") and (self.pending > 0 or not self.planned)

    @property
    def label(self) -> str:
        return str(self.request.get("label") or self.job_id)

    @property
    def started_by(self) -> str:
        """Who started the job (their sign-in e-mail or name; "" for jobs from before sign-in)."""
        return str(self.request.get("started_by") or "")


@dataclass(frozen=True)
class FailedItem:
    seq: int
    item: str
    reason: str
    error_type: str
    content_preview: str
    retryable: bool


@dataclass(frozen=True)
class JobDocument:
    """One document an import read: its id, where it came from, its content hash (all its
    chunks in order) and how many chunks it made."""

    document_id: str
    project: str
    repo: str
    source_file: str
    document_hash: str
    chunks: int


@dataclass(frozen=True)
class PendingItem:
    seq: int
    uuid: str
    memory: dict[str, Any]
    item: str


class JobStore:
    """Jobs, their items and their batches in one SQLite file. Thread-safe and
    process-safe (WAL; every change is one transaction).

    Writes go through one connection, reads through another, so a page reading progress
    never waits behind a write that waits for another process's lock. The database is
    opened on first use, and opened again after a read-only or I/O failure, so a data
    directory that was read-only, missing or full works as soon as it is fixed. A write
    waits `timeout` seconds for another process's write, then raises JobStoreError.
    """

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.RLock()  # the writing connection and its transaction
        self._read_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._schema_ready = False  # once true, reading never waits for the writing connection
        # Job id -> (state, reason) of stops that could not be written yet; shown as the
        # job's state meanwhile, written by `flush_unrecorded` once the database takes it.
        self._unrecorded: dict[str, tuple[str, str]] = {}

    def close(self) -> None:
        with self._lock, self._read_lock:
            for db in (self._db, self._reader):
                if db is not None:
                    db.close()
            self._db = self._reader = None

    def _tx(self) -> "_Transaction":
        return _Transaction(self)

    # --- jobs ------------------------------------------------------------------------
    def create_job(self, request: dict[str, Any]) -> str:
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self._tx() as db:
            # Owned from the start: if this process dies before running it, it shows as interrupted.
            db.execute(
                "INSERT INTO jobs (id, created_at, state, request, owner, heartbeat) VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, now, json.dumps(request, ensure_ascii=False), _owner(), now),
            )
        return job_id

    def request(self, job_id: str) -> dict[str, Any]:
        row = self._one("SELECT request FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise KeyError(f"no job {job_id!r}")
        return dict(json.loads(row[0]))

    def get(self, job_id: str) -> JobProgress | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._progress(rows[0]) if rows else None

    def require(self, job_id: str) -> JobProgress:
        job = self.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}; `python -m memsys jobs` lists them")
        return job

    def list_jobs(self, limit: int = 50) -> list[JobProgress]:
        return [self._progress(r) for r in self._rows("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))]

    def _progress(self, r: sqlite3.Row) -> JobProgress:
        state, error = r["state"], r["error"]
        unrecorded = self._unrecorded.get(r["id"])
        if unrecorded is not None:
            state, error = unrecorded
        elif state in ACTIVE_STATES and not _owner_alive(r["owner"], r["heartbeat"]):
            state = "interrupted"  # its process was killed (or stopped) while it was queued or ran
        processed = r["written"] + r["updated"] + r["unchanged"] + r["failed"]
        rate = 0.0
        eta = None
        if r["run_started_at"] and state in ("running", "cancelling"):
            done_this_run = processed - r["run_processed_start"]
            elapsed = time.time() - r["run_started_at"]
            rate = done_this_run / elapsed if elapsed > 0 else 0.0
            eta = (r["total"] - processed) / rate if rate > 0 else None
        elif r["finished_at"] and r["started_at"] and r["finished_at"] > r["started_at"]:
            rate = (processed - r["run_processed_start"]) / (r["finished_at"] - (r["run_started_at"] or r["started_at"]))
        lookups = r["cache_hits"] + r["cache_misses"]
        return JobProgress(
            job_id=r["id"],
            state=state,
            total=r["total"],
            written=r["written"],
            unchanged=r["unchanged"],
            failed=r["failed"],
            processed=processed,
            items_per_second=max(rate, 0.0),
            eta_seconds=eta,
            current_batch=r["current_batch"],
            batches_done=r["batches_done"],
            cache_hits=r["cache_hits"],
            cache_misses=r["cache_misses"],
            cache_hit_rate=r["cache_hits"] / lookups if lookups else 0.0,
            created_at=r["created_at"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            error=error,
            planned=bool(r["planned"]),
            request=json.loads(r["request"]),
            ocr_pages=r["ocr_pages"],
            updated=r["updated"],
            removed=r["removed"],
        )

    def claim(self, job_id: str) -> None:
        """This process runs the job from now on."""
        now = time.time()
        with self._tx() as db:
            processed = db.execute("SELECT written + updated + unchanged + failed FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            db.execute(
                "UPDATE jobs SET state = 'planning', owner = ?, heartbeat = ?, started_at = COALESCE(started_at, ?),"
                " finished_at = NULL, error = '', cancel_requested = 0, run_started_at = ?, run_processed_start = ?"
                " WHERE id = ?",
                (_owner(), now, now, now, processed, job_id),
            )
        self._unrecorded.pop(job_id, None)

    def set_state(self, job_id: str, state: str, error: str = "") -> None:
        finished = time.time() if state in FINAL_STATES else None
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = COALESCE(?, finished_at), heartbeat = ? WHERE id = ?",
                (state, error, finished, time.time(), job_id),
            )
        self._unrecorded.pop(job_id, None)

    def record_stop(self, job_id: str, state: str, error: str) -> None:
        """Set a job's final state; if the database cannot take it now (full disk, lock,
        read-only), the job shows that state in this process at once and the write is
        tried again by `flush_unrecorded`. Never raises: error handlers call it."""
        try:
            self.set_state(job_id, state, error)
        except JobStoreError as e:
            self._unrecorded[job_id] = (state, error if str(e) in error else f"{error}; {e}" if error else str(e))

    def flush_unrecorded(self) -> int:
        """Write the stops that could not be written before; returns how many still wait
        (the database still fails: the caller tries again later)."""
        for job_id, (state, error) in list(self._unrecorded.items()):
            try:
                self.set_state(job_id, state, error)
            except JobStoreError:
                break  # the same cause holds for the rest; they stay shown and are tried later
        return len(self._unrecorded)

    def mark_queued(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', owner = ?, heartbeat = ?, cancel_requested = 0, finished_at = NULL, error = ''"
                " WHERE id = ?",
                (_owner(), time.time(), job_id),
            )
        self._unrecorded.pop(job_id, None)

    def request_cancel(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET cancel_requested = 1,"
                " state = CASE WHEN state IN ('planning', 'running') THEN 'cancelling'"
                "              WHEN state = 'queued' THEN 'cancelled' ELSE state END,"
                " finished_at = CASE WHEN state = 'queued' THEN ? ELSE finished_at END"
                " WHERE id = ?",
                (time.time(), job_id),
            )

    def cancel_requested(self, job_id: str) -> bool:
        row = self._one("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(row and row[0])

    def heartbeat(self, job_id: str, current_batch: int | None = None) -> None:
        with self._tx() as db:
            if current_batch is None:
                db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ?", (time.time(), job_id))
            else:
                db.execute("UPDATE jobs SET heartbeat = ?, current_batch = ? WHERE id = ?", (time.time(), current_batch, job_id))

    # --- planning --------------------------------------------------------------------
    def reset_plan(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM items WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM batches WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM documents WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM warnings WHERE job_id = ?", (job_id,))
            db.execute(
                "UPDATE jobs SET planned = 0, total = 0, written = 0, updated = 0, unchanged = 0, failed = 0, removed = 0,"
                " cache_hits = 0, cache_misses = 0, batches_done = 0, current_batch = 0, run_processed_start = 0, ocr_pages = 0"
                " WHERE id = ?",
                (job_id,),
            )

    def set_ocr_pages(self, job_id: str, pages: int) -> None:
        """How many scanned pages planning has read by OCR so far (it takes seconds a page,
        so the progress shows it before any item is found)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET ocr_pages = ?, heartbeat = ? WHERE id = ?", (pages, time.time(), job_id))

    def add_items(self, job_id: str, rows: Sequence[tuple[int, str | None, dict[str, Any] | None, str, str, str]],
                  warnings: Sequence[Any] = ()) -> None:
        """Add planned items: (seq, uuid, memory dict or None, item name, state, reason),
        and warnings about files that were still read (anything with .item and .reason).
        An item whose memory an earlier item of the job already has is settled at once as
        unchanged, so each memory is written once per job."""
        if not rows and not warnings:
            return
        with self._tx() as db:
            db.executemany("INSERT INTO warnings (job_id, item, reason) VALUES (?, ?, ?)",
                           [(job_id, w.item, w.reason) for w in warnings])
            uuids = list({r[1] for r in rows if r[1]})
            seen: dict[str, str] = {}
            for start in range(0, len(uuids), 500):
                chunk = uuids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                seen.update(db.execute(
                    f"SELECT uuid, MIN(item) FROM items WHERE job_id = ? AND uuid IN ({marks}) GROUP BY uuid", (job_id, *chunk)
                ).fetchall())
            settled = []
            for seq, uid, mem, name, state, reason in rows:
                if state == "pending" and uid in seen:
                    state, reason = "unchanged", f"same content as {seen[uid]}"
                elif state == "pending" and uid:
                    seen[uid] = name
                settled.append((job_id, seq, uid, json.dumps(mem, ensure_ascii=False) if mem is not None else None, name, state,
                                reason, "input" if state == "failed" else ""))
            db.executemany(
                "INSERT INTO items (job_id, seq, uuid, memory, item, state, reason, error_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                settled,
            )
            failed = sum(1 for r in settled if r[5] == "failed")
            unchanged = sum(1 for r in settled if r[5] == "unchanged")
            db.execute(
                "UPDATE jobs SET total = total + ?, failed = failed + ?, unchanged = unchanged + ?, heartbeat = ? WHERE id = ?",
                (len(settled), failed, unchanged, time.time(), job_id),
            )

    def finish_planning(self, job_id: str) -> None:
        """Planned: items/s counts from here, so planning time does not dilute the rate."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET planned = 1, state = 'running', run_started_at = ?,"
                " run_processed_start = written + updated + unchanged + failed WHERE id = ?",
                (time.time(), job_id),
            )

    # --- documents -------------------------------------------------------------------
    def add_documents(self, job_id: str, documents: Iterable[JobDocument]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, d.document_id, d.project, d.repo, d.source_file, d.document_hash, d.chunks) for d in documents],
            )

    def documents(self, job_id: str) -> list[JobDocument]:
        rows = self._rows("SELECT * FROM documents WHERE job_id = ? ORDER BY source_file", (job_id,))
        return [JobDocument(r["document_id"], r["project"], r["repo"], r["source_file"], r["document_hash"], r["chunks"])
                for r in rows]

    def document_items(self, job_id: str, document: JobDocument) -> tuple[set[str], bool]:
        """The uuids of a document's chunks in this job, and whether every one of them is
        settled (none pending or failed, and no failure of the file or a part of it)."""
        # A file of rows with ids holds a document per row: each is only its own rows.
        rows = [r for r in self._rows(
            "SELECT uuid, state, json_extract(memory, '$.record_id') AS record_id FROM items WHERE job_id = ?"
            " AND json_extract(memory, '$.source_file') = ?"
            " AND json_extract(memory, '$.project') = ? AND json_extract(memory, '$.repo') = ?",
            (job_id, document.source_file, document.project, document.repo),
        ) if document_id(document.project, document.repo, document.source_file, r["record_id"] or "") == document.document_id]
        broken = self._one(
            "SELECT COUNT(*) FROM items WHERE job_id = ? AND state = 'failed' AND memory IS NULL AND (item = ? OR item LIKE ?)",
            (job_id, document.source_file, document.source_file.replace("%", "_") + " %"),
        )[0]
        uuids = {r["uuid"] for r in rows}
        complete = not broken and all(r["state"] not in ("pending", "failed") for r in rows)
        return uuids, complete

    def add_removed(self, job_id: str, n: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET removed = removed + ? WHERE id = ?", (n, job_id))

    def earlier_documents(self, job_id: str, origin: str) -> list[JobDocument]:
        """The documents of earlier jobs that imported the same `origin` (a mirror's folder),
        newest job first, one row per document."""
        rows = self._rows(
            "SELECT d.* FROM documents d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.job_id != ? AND json_extract(j.request, '$.origin') = ? ORDER BY j.created_at DESC",
            (job_id, origin),
        )
        seen: dict[str, JobDocument] = {}
        for r in rows:
            seen.setdefault(r["document_id"], JobDocument(r["document_id"], r["project"], r["repo"], r["source_file"],
                                                          r["document_hash"], r["chunks"]))
        return list(seen.values())

    def gone_documents(self, origin: str, present: set[str], job_id: str = "") -> list[JobDocument]:
        """A mirror's removals: the documents earlier imports of `origin` had (other than
        job `job_id`) whose ids are not in `present`."""
        return [d for d in self.earlier_documents(job_id, origin) if d.document_id not in present]

    def last_imports(self, document_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """For each document id: the id and time of the last job that imported it."""
        out: dict[str, tuple[str, float]] = {}
        ids = list(document_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._rows(
                f"SELECT d.document_id, j.id, j.created_at FROM documents d JOIN jobs j ON j.id = d.job_id"
                f" WHERE d.document_id IN ({marks}) ORDER BY j.created_at", chunk,
            ):
                out[r[0]] = (r[1], float(r[2]))
        return out

    def job_uuids(self, job_id: str) -> list[str]:
        """The uuids of every memory a job's items name (what deleting the job deletes)."""
        return [r[0] for r in self._rows("SELECT DISTINCT uuid FROM items WHERE job_id = ? AND uuid IS NOT NULL", (job_id,))]

    def forget(self, uuids: Sequence[str]) -> int:
        """Drop the content every job keeps for these memories (they were deleted), so no
        resume or retry can write them again: a pending item becomes failed ("deleted"),
        and no item keeps the text. Returns how many items were touched."""
        touched = 0
        ids = list(dict.fromkeys(uuids))
        with self._tx() as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                pending = db.execute(
                    f"SELECT job_id, COUNT(*) FROM items WHERE state = 'pending' AND uuid IN ({marks}) GROUP BY job_id", chunk
                ).fetchall()
                for job_id, n in pending:
                    db.execute("UPDATE jobs SET failed = failed + ? WHERE id = ?", (n, job_id))
                db.execute(
                    f"UPDATE items SET state = 'failed', reason = 'deleted before it was written', error_type = 'deleted'"
                    f" WHERE state = 'pending' AND uuid IN ({marks})", chunk,
                )
                touched += db.execute(
                    f"UPDATE items SET memory = NULL WHERE memory IS NOT NULL AND uuid IN ({marks})", chunk
                ).rowcount
        return touched

    def uuids_matching(self, fields: dict[str, str], tags: Sequence[str] = ()) -> list[str]:
        """The uuids of every item, in any job, whose memory has these field values (and
        any of `tags`), whether it was stored or not."""
        if not fields and not tags:
            raise ValueError("name at least one field")
        conditions = ["memory IS NOT NULL"]
        params: list[Any] = []
        for name, value in fields.items():
            conditions.append(f"json_extract(memory, '$.{name}') = ?")
            params.append(value)
        if tags:
            conditions.append(
                f"EXISTS (SELECT 1 FROM json_each(memory, '$.tags') WHERE value IN ({','.join('?' * len(tags))}))"
            )
            params.extend(tags)
        rows = self._rows(f"SELECT DISTINCT uuid FROM items WHERE {' AND '.join(conditions)}", params)
        return [r[0] for r in rows if r[0]]

    def sources_of(self, uuids: Sequence[str]) -> set[tuple[str, str]]:
        """(job id, source file) of every item holding the content of these memories."""
        out: set[tuple[str, str]] = set()
        ids = list(dict.fromkeys(uuids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update((r[0], r[1]) for r in self._rows(
                f"SELECT DISTINCT job_id, json_extract(memory, '$.source_file') FROM items"
                f" WHERE memory IS NOT NULL AND uuid IN ({marks})", chunk,
            ) if r[1])
        return out

    def keeps_content_of(self, job_id: str, source_file: str) -> bool:
        """True while any item of the job still holds text from `source_file`."""
        row = self._one(
            "SELECT 1 FROM items WHERE job_id = ? AND memory IS NOT NULL AND json_extract(memory, '$.source_file') = ? LIMIT 1",
            (job_id, source_file),
        )
        return row is not None

    # --- items -----------------------------------------------------------------------
    def pending_items(self, job_id: str, after_seq: int = -1, limit: int = 1000) -> list[PendingItem]:
        rows = self._rows(
            "SELECT seq, uuid, memory, item FROM items WHERE job_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after_seq, limit),
        )
        return [PendingItem(r["seq"], r["uuid"], json.loads(r["memory"]), r["item"]) for r in rows]

    def stored_items(self, job_id: str) -> list[tuple[str, str]]:
        """(uuid, item name) of every distinct memory the job wrote or found already stored."""
        rows = self._rows(
            "SELECT uuid, MIN(item) FROM items WHERE job_id = ? AND state IN ('written', 'unchanged')"
            " AND uuid IS NOT NULL GROUP BY uuid ORDER BY MIN(seq)",
            (job_id,),
        )
        return [(r[0], r[1]) for r in rows]

    def record_batch(self, batch: BatchRecord, outcomes: Sequence[tuple[int, str, str, str]]) -> None:
        """Store one batch's figures and its items' outcomes (seq, state, reason, error_type)
        in one transaction, so counts and states never disagree."""
        counts = {s: 0 for s in ITEM_STATES}
        for _, state, _, _ in outcomes:
            counts[state] += 1
        with self._tx() as db:
            db.executemany(
                "UPDATE items SET state = ?, reason = ?, error_type = ?, attempts = attempts + 1 WHERE job_id = ? AND seq = ?",
                [(state, reason, etype, batch.job_id, seq) for seq, state, reason, etype in outcomes],
            )
            db.execute(
                "INSERT OR REPLACE INTO batches (job_id, batch_no, size, embed_seconds, write_seconds, seconds, cache_hits,"
                " cache_misses, written, unchanged, failed, retries, started_at, finished_at, error_type, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (batch.job_id, batch.batch_no, batch.size, batch.embed_seconds, batch.write_seconds, batch.seconds,
                 batch.cache_hits, batch.cache_misses, batch.written, batch.unchanged, batch.failed, batch.retries,
                 batch.started_at, batch.finished_at, batch.error_type, batch.updated),
            )
            db.execute(
                "UPDATE jobs SET written = written + ?, updated = updated + ?, unchanged = unchanged + ?, failed = failed + ?,"
                " cache_hits = cache_hits + ?, cache_misses = cache_misses + ?, batches_done = batches_done + 1,"
                " heartbeat = ? WHERE id = ?",
                (counts["written"], counts["updated"], counts["unchanged"], counts["failed"], batch.cache_hits,
                 batch.cache_misses, time.time(), batch.job_id),
            )

    def next_batch_no(self, job_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(batch_no), 0) FROM batches WHERE job_id = ?", (job_id,))
        return int(row[0]) + 1 if row else 1

    def reset_failed(self, job_id: str) -> int:
        """Make failed items that can be tried again pending; returns how many."""
        with self._tx() as db:
            n = db.execute(
                "UPDATE items SET state = 'pending', reason = '', error_type = ''"
                " WHERE job_id = ? AND state = 'failed' AND memory IS NOT NULL",
                (job_id,),
            ).rowcount
            db.execute("UPDATE jobs SET failed = failed - ? WHERE id = ?", (n, job_id))
        return int(n)

    def recount(self, job_id: str) -> None:
        """Recompute the job's counters from its items (after a crash, they are the truth)."""
        with self._tx() as db:
            counts = dict(db.execute("SELECT state, COUNT(*) FROM items WHERE job_id = ? GROUP BY state", (job_id,)).fetchall())
            total = sum(counts.values())
            db.execute(
                "UPDATE jobs SET total = ?, written = ?, updated = ?, unchanged = ?, failed = ? WHERE id = ?",
                (total, counts.get("written", 0), counts.get("updated", 0), counts.get("unchanged", 0),
                 counts.get("failed", 0), job_id),
            )

    def failed_items(self, job_id: str, limit: int = FAILED_PAGE, offset: int = 0, after_seq: int = -1) -> list[FailedItem]:
        """One page of a job's failed items, in item order: `limit` of them after `offset`
        (for numbered pages) or after item `after_seq` (for walking them all)."""
        rows = self._rows(
            "SELECT seq, item, reason, error_type, memory FROM items WHERE job_id = ? AND state = 'failed' AND seq > ?"
            " ORDER BY seq LIMIT ? OFFSET ?",
            (job_id, after_seq, limit, offset),
        )
        out = []
        for r in rows:
            content = json.loads(r["memory"])["content"] if r["memory"] else ""
            preview = content[:120] + ("…" if len(content) > 120 else "")
            out.append(FailedItem(r["seq"], r["item"], r["reason"], r["error_type"], preview, r["memory"] is not None))
        return out

    def iter_failed_items(self, job_id: str, page: int = FAILED_PAGE) -> Iterator[FailedItem]:
        """Every failed item of a job, read a page at a time (a million never sit in memory)."""
        after = -1
        while True:
            items = self.failed_items(job_id, limit=page, after_seq=after)
            yield from items
            if len(items) < page:
                return
            after = items[-1].seq

    def failed_counts(self, job_id: str) -> tuple[int, int]:
        """(failed items, how many of them can be retried), counted by the database."""
        row = self._one("SELECT COUNT(*), COUNT(memory) FROM items WHERE job_id = ? AND state = 'failed'", (job_id,))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def write_failed_csv(self, job_id: str, out: TextIO) -> int:
        """The job's failed items as CSV (the columns people read), a page at a time;
        returns how many rows were written."""
        writer = csv.writer(out)
        writer.writerow(FAILED_COLUMNS)
        n = 0
        for item in self.iter_failed_items(job_id):
            writer.writerow(failed_row(item).values())
            n += 1
        return n

    def warnings(self, job_id: str, limit: int = FAILED_PAGE) -> tuple[int, list[tuple[str, str]]]:
        """(how many warnings the job's files gave, the first `limit` as (item, reason))."""
        count = self._one("SELECT COUNT(*) FROM warnings WHERE job_id = ?", (job_id,))
        rows = self._rows("SELECT item, reason FROM warnings WHERE job_id = ? ORDER BY rowid LIMIT ?", (job_id, limit))
        return (int(count[0]) if count else 0), [(r["item"], r["reason"]) for r in rows]

    def errors_by_type(self, job_id: str) -> dict[str, int]:
        return {
            r[0] or "unknown": int(r[1])
            for r in self._rows("SELECT error_type, COUNT(*) FROM items WHERE job_id = ? AND state = 'failed' GROUP BY 1", (job_id,))
        }

    def batches(self, job_id: str) -> list[BatchRecord]:
        rows = self._rows("SELECT * FROM batches WHERE job_id = ? ORDER BY batch_no", (job_id,))
        return [BatchRecord(**{k: r[k] for k in r.keys()}) for r in rows]

    def metrics(self, job_id: str) -> BatchMetrics:
        return BatchMetrics.from_batches(self.batches(job_id), self.errors_by_type(job_id))

    # --- plumbing --------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        db = open_database(self.path, self.timeout, _SCHEMA)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            for table, columns in _ADDED_COLUMNS.items():  # databases made before a column existed
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns:
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _writer(self) -> sqlite3.Connection:
        """The writing connection, opened if needed (call with `_lock` held)."""
        if self._db is None:
            with self._translated():
                self._db = self._open()
            self._schema_ready = True
        return self._db

    @contextmanager
    def _translated(self, reading: bool = False) -> Iterator[None]:
        """sqlite3 and OS errors become JobStoreError with a plain reason. After a failure
        that may have spoiled the connection (read-only, I/O, cannot open) it is closed, so
        the next call opens the database afresh."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise self._failure(e, reading) from e

    def _failure(self, e: BaseException, reading: bool) -> JobStoreError:
        error = explain_db_error(e, self.path, self.timeout)
        if error.kind in ("read_only", "cannot_open", "io"):
            self._drop(reading)
        return error

    def _drop(self, reading: bool) -> None:
        db = self._reader if reading else self._db
        if reading:
            self._reader = None
        else:
            self._db = None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass  # closing a connection that already failed; the next call opens a new one

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            if self._reader is None:
                if not self._schema_ready:
                    with self._lock:
                        self._writer()  # the schema exists before anything reads it
                with self._translated(reading=True):
                    self._reader = sqlite3.connect(str(self.path), timeout=self.timeout, check_same_thread=False,
                                                   isolation_level=None)
            with self._translated(reading=True):
                cur = self._reader.execute(sql, params)
                cur.row_factory = sqlite3.Row
                return cur.fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._rows(sql, params)
        return rows[0] if rows else None


def open_database(path: Path, timeout: float, schema: str) -> sqlite3.Connection:
    """A writing connection to one of memsys's SQLite databases (the job database, its
    audit table): its folder made, WAL, waiting up to `timeout` for another writer, the
    schema created. sqlite3 and OS errors pass through, nothing left open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    except sqlite3.Error:
        db.close()
        raise
    return db


def explain_db_error(e: BaseException, path: Path, timeout: float) -> JobStoreError:
    """A database failure in the user's words, with what to do about it."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e).lower()
    folder = path.parent
    code = getattr(e, "errno", None)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return JobStoreError("locked", f"the job database {path} is locked by another process (waited {timeout:g} s "
                                       "for it); nothing was changed: try again when that process has finished writing")
    if name == "SQLITE_FULL" or code == errno.ENOSPC or "disk is full" in text or _disk_full(folder):
        return JobStoreError("disk_full", f"the disk holding the data directory {folder} is full; nothing was changed: "
                                          "free some space there and memsys carries on (no restart needed)")
    if name.startswith("SQLITE_READONLY") or code == errno.EROFS or not _writable(folder):
        return JobStoreError("read_only", f"the data directory {folder} is read-only; nothing was changed: make it "
                                          "writable and memsys carries on (no restart needed)")
    if name.startswith("SQLITE_CANTOPEN") or isinstance(e, OSError):
        return JobStoreError("cannot_open", f"the job database {path} cannot be opened ({e}): check that the data "
                                            "directory exists and that memsys may write there")
    return JobStoreError("io", f"the job database {path} could not be read or written ({e}); nothing was changed: "
                               "try again, and check the disk if it keeps happening")


def _writable(folder: Path) -> bool:
    """Whether this process may write in `folder` (False on a read-only mount, even for root)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free == 0
    except OSError:
        return False


FAILED_COLUMNS = ("Item", "Reason", "Kind of error", "Can retry", "Content")


def failed_row(item: FailedItem) -> dict[str, Any]:
    """A failed item as people read it: the table on screen and the CSV download."""
    return dict(zip(FAILED_COLUMNS, (
        item.item, item.reason, item.error_type or "unknown", "yes" if item.retryable else "no (fix the file)",
        item.content_preview,
    )))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT on the writing connection, holding the store's lock.
    Whatever fails (BEGIN, a statement, COMMIT), the transaction is rolled back and the
    lock released before the error goes on as a JobStoreError."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._lock.acquire()
        try:
            db = store._writer()
            with store._translated():
                db.execute("BEGIN IMMEDIATE")
        except BaseException:
            store._lock.release()
            raise
        return db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        store = self._store
        try:
            if exc_type is None:
                try:
                    with store._translated():
                        store._writer().execute("COMMIT")
                except JobStoreError:
                    self._rollback()
                    raise
                return
            self._rollback()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise store._failure(exc, reading=False) from exc
        finally:
            store._lock.release()

    def _rollback(self) -> None:
        db = self._store._db
        if db is None or not db.in_transaction:
            return  # SQLite rolled it back itself, or the connection was dropped (which rolls back)
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            self._store._drop(reading=False)  # closing the connection rolls the transaction back


class JobRunner:
    """Runs jobs one after another in a background thread (one runner per process).
    Submitting from any thread is safe; the UI and CLI only read progress from the store."""

    def __init__(self, store: JobStore, run_job: Callable[[str], None]) -> None:
        self.store = store
        self._run_job = run_job
        self._queue: queue.Queue[str] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)  # notified when a job of this runner ends
        self._thread = threading.Thread(target=self._loop, name="memsys-job-runner", daemon=True)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        """Queue a job. If the store cannot record that (JobStoreError), nothing is queued
        and the runner is not left busy."""
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        try:
            self.store.mark_queued(job_id)
        except BaseException:
            with self._lock:
                self._queued.discard(job_id)
            raise
        self._queue.put(job_id)

    def is_busy(self) -> bool:
        with self._lock:
            return bool(self._queued)

    def cancel(self, job_id: str) -> None:
        self.store.request_cancel(job_id)

    def resume(self, job_id: str) -> str:
        job = self.store.require(job_id)
        if job.is_active:
            raise ValueError(f"job {job_id} is {job.state}; it is already going")
        self.store.recount(job_id)
        self.submit(job_id)
        return job_id

    def retry_failed(self, job_id: str) -> int:
        """Re-run only the failed items of a finished job; returns how many will be retried."""
        job = self.store.require(job_id)
        if job.is_active:
            raise ValueError(f"job {job_id} is {job.state}; wait for it to finish before retrying its failed items")
        n = self.store.reset_failed(job_id)
        if n or job.pending:
            self.submit(job_id)
        return n

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> JobProgress:
        """Block until the job is no longer active (tests and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                queued = job_id in self._queued
            job = self.store.require(job_id)
            if not queued and not job.is_active:
                return job
            left = poll if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
            with self._finished:
                # A job of this process wakes the waiter at once; one run by another
                # process (or a state change in the store) is seen at the next poll.
                self._finished.wait_for(lambda: job_id not in self._queued if queued else False, min(poll, left))

    def _loop(self) -> None:
        """Take jobs one by one for the life of the process. Nothing a job does ends this
        loop: a job that raises is marked failed with its reason (shown at once, written
        when the database takes it), and the next job is taken."""
        while True:
            try:
                job_id = self._queue.get(timeout=_RECORD_RETRY_SECONDS)
            except queue.Empty:
                self.store.flush_unrecorded()
                continue
            try:
                self._run_one(job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)
                    self._finished.notify_all()

    def _run_one(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
            if job is not None and job.state != "cancelled":
                self._run_job(job_id)
        except Exception as e:  # noqa: BLE001 - any error is this job's; the runner lives on
            log.error("job %s stopped: %s", job_id, e, exc_info=True, extra={"job_id": job_id})
            self.store.record_stop(job_id, "failed", _stopped_because(e))


def _stopped_because(e: BaseException) -> str:
    message = str(e)
    if isinstance(e, JobStoreError) or not message:
        return f"the import stopped: {message or type(e).__name__}"
    return f"the import stopped: {type(e).__name__}: {scrub(message)[:300]}"


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
