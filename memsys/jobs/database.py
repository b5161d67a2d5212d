"""The job database (SQLite, WAL, in the data directory): jobs, their items, batches,
warnings and the documents an import read.

A job's items are planned into the database before any is processed, so a job can resume
after any stop: every item is pending, written, updated, unchanged or failed (with its
reason), and the counts always add up to the total. Cancelling works across processes (a
flag in the database). Database trouble (a lock held by another process, a full disk, a
read-only data directory) raises `JobStoreError` with a plain reason (memsys/jobs/connection.py).
"""
from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from memsys.errors import JobStoreError
from memsys.jobs.connection import SqliteFile
from memsys.jobs.metrics import BatchMetrics, BatchRecord
from memsys.jobs.records import (
    ACTIVE_STATES,
    FAILED_COLUMNS,
    FAILED_PAGE,
    FINAL_STATES,
    ITEM_STATES,
    FailedItem,
    ItemOutcome,
    JobDocument,
    JobProgress,
    PendingItem,
    PlannedItem,
    failed_row,
)
from memsys.models import document_id

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



class JobStore:
    """Jobs, their items and their batches in one SQLite file (memsys/jobs/connection.py:
    thread-safe and process-safe, every change one transaction, reads never wait behind
    a write)."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self._file = SqliteFile(path, timeout, _SCHEMA, _ADDED_COLUMNS)
        self._tx = self._file.transaction
        self._rows = self._file.rows
        self._one = self._file.one
        # Job id -> (state, reason) of stops that could not be written yet; shown as the
        # job's state meanwhile, written by `flush_unrecorded` once the database takes it.
        self._unrecorded: dict[str, tuple[str, str]] = {}

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def timeout(self) -> float:
        return self._file.timeout

    def close(self) -> None:
        self._file.close()

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

    def add_items(self, job_id: str, items: Sequence[PlannedItem], warnings: Sequence[Any] = ()) -> None:
        """Add planned items, and warnings about files that were still read (anything with
        .item and .reason). An item whose memory an earlier item of the job already has is
        settled at once as unchanged, so each memory is written once per job."""
        if not items and not warnings:
            return
        with self._tx() as db:
            db.executemany("INSERT INTO warnings (job_id, item, reason) VALUES (?, ?, ?)",
                           [(job_id, w.item, w.reason) for w in warnings])
            uuids = list({i.uuid for i in items if i.uuid})
            seen: dict[str, str] = {}
            for start in range(0, len(uuids), 500):
                chunk = uuids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                seen.update(db.execute(
                    f"SELECT uuid, MIN(item) FROM items WHERE job_id = ? AND uuid IN ({marks}) GROUP BY uuid", (job_id, *chunk)
                ).fetchall())
            settled = []
            for i in items:
                state, reason = i.state, i.reason
                if state == "pending" and i.uuid in seen:
                    state, reason = "unchanged", f"same content as {seen[i.uuid]}"
                elif state == "pending" and i.uuid:
                    seen[i.uuid] = i.item
                memory = json.dumps(i.memory, ensure_ascii=False) if i.memory is not None else None
                settled.append((job_id, i.seq, i.uuid, memory, i.item, state, reason, "input" if state == "failed" else ""))
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

    def record_batch(self, batch: BatchRecord, outcomes: Mapping[int, ItemOutcome]) -> None:
        """Store one batch's figures and its items' outcomes (by item seq) in one
        transaction, so counts and states never disagree."""
        counts = {s: 0 for s in ITEM_STATES}
        for outcome in outcomes.values():
            counts[outcome.state] += 1
        with self._tx() as db:
            db.executemany(
                "UPDATE items SET state = ?, reason = ?, error_type = ?, attempts = attempts + 1 WHERE job_id = ? AND seq = ?",
                [(o.state, o.reason, o.error_type, batch.job_id, seq) for seq, o in sorted(outcomes.items())],
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

