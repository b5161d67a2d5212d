"""The job database (SQLite, WAL, in the data directory; or PostgreSQL): jobs, their items, batches,
warnings and the documents an import read.

A job's items are planned into the database before any is processed, so a job can resume
after any stop: every item is pending, written, updated, unchanged or failed (with its
reason), and the counts always add up to the total. Cancelling works across processes (a
flag in the database). Database trouble (a lock held by another process, a full disk, a
read-only data directory) raises `JobStoreError` with a plain reason (memsys/jobs/connection.py).
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from memsys.errors import JobStoreError
from memsys.jobs.job_documents import DocumentTables
from memsys.jobs.job_items import ItemTables
from memsys.jobs.job_knowledge import KnowledgeTables
from memsys.jobs.job_timings import TimingTables
from memsys.jobs.job_stages import StageTables
from memsys.jobs.records import ACTIVE_STATES, FINAL_STATES, JobProgress
from memsys.jobs.schema import JobDatabaseLocation


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


class JobStore(ItemTables, DocumentTables, KnowledgeTables, TimingTables, StageTables):
    """Jobs and their state (this class), their items and batches (`ItemTables`), the
    documents they read (`DocumentTables`), knowledge bases and remembered choices
    (`KnowledgeTables`), where their time went (`TimingTables`) and where the items in
    flight are (`StageTables`), in one SQLite file or PostgreSQL database."""

    def __init__(self, location: JobDatabaseLocation, timeout: float = 20.0) -> None:
        super().__init__(location, timeout)
        # Job id -> (state, reason) of stops that could not be written yet; shown as the
        # job's state meanwhile, written by `flush_unrecorded` once the database takes it.
        self._unrecorded: dict[str, tuple[str, str]] = {}

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

    def _progress(self, r: Any) -> JobProgress:
        state, error = r["state"], r["error"]
        unrecorded = self._unrecorded.get(r["id"])
        if unrecorded is not None:
            state, error = unrecorded
        elif state in ACTIVE_STATES and not _owner_alive(r["owner"], r["heartbeat"]):
            state = "interrupted"  # its process was killed (or stopped) while it was queued or ran
        processed = r["written"] + r["updated"] + r["unchanged"] + r["failed"]
        rate = 0.0
        eta = None
        # Embedded, not yet recorded: the progress moves per memory, not per batch.
        embedded = self.embedded_in_flight(r["id"]) if state in ("running", "cancelling") else 0
        if r["run_started_at"] and state in ("running", "cancelling"):
            done_this_run = processed + embedded - r["run_processed_start"]
            elapsed = time.time() - r["run_started_at"]
            rate = done_this_run / elapsed if elapsed > 0 else 0.0
            eta = (r["total"] - processed - embedded) / rate if rate > 0 else None
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
            embedded=embedded,
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
            db.execute("DELETE FROM item_stages WHERE job_id = ?", (job_id,))  # a killed run's
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
