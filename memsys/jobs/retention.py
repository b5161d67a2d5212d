"""Retention: what a finished job keeps, and for how long. Nothing a resume, retry,
re-embed or delete still needs is removed:

- A job's spooled files are read only while it is planned; afterwards resume and retry
  work from its items' memory texts. So the spool of a finished, planned job with no
  pending and no failed items is removed `spool_keep_days` after it finished (a job with
  failed items keeps its files until its texts are pruned; a job with pending items, one
  that can be resumed, keeps everything).
- Pruning a job's texts (`jobs prune --older-than`, or MEMSYS_JOB_TEXTS_KEEP_DAYS) drops the
  memory text of each of its items and its spooled files; the job's summary, counts,
  batches (metrics), warnings, documents, its items' uuids, names, states and reasons, and
  the audit trail stay. Delete by job uses the uuids; delete by filter asks Weaviate.
  Resume and retry of a pruned job are refused with a sentence (`refuse_if_pruned`).
- Afterwards the job database is vacuumed when a quarter or more of it is free pages.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from memsys.jobs.database import JobStore
from memsys.jobs.records import FINAL_STATES, JobProgress

DAY = 86400.0
_VACUUM_FREE_SHARE = 0.25


@dataclass
class RetentionReport:
    """What retention removed (or, in a dry run, would remove) and what it kept and why."""

    spool_released: list[str] = field(default_factory=list)  # job ids whose spooled files went
    spool_files: int = 0
    spool_bytes: int = 0
    pruned: list[str] = field(default_factory=list)  # job ids whose memory texts went
    pruned_items: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # job id -> why it was kept
    vacuumed_bytes: int = 0
    dry_run: bool = False


def pruned_at(store: JobStore, job_id: str) -> float | None:
    """When the job's memory texts were pruned, or None."""
    row = store._one("SELECT texts_pruned_at FROM retention WHERE job_id = ?", (job_id,))
    return float(row[0]) if row and row[0] is not None else None


def refuse_if_pruned(store: JobStore, job_id: str, what: str) -> None:
    """A ValueError with a sentence when the job's texts were pruned: nothing is left to
    `what` ("resume", "retry")."""
    when = pruned_at(store, job_id)
    if when is not None:
        day = time.strftime("%Y-%m-%d", time.localtime(when))
        raise ValueError(f"job {job_id} cannot {what}: its memories' texts and spooled files were pruned on {day} "
                         "(its summary, metrics and audit records are kept); import the files again instead")


def _released(store: JobStore, job_id: str) -> bool:
    row = store._one("SELECT spool_removed_at FROM retention WHERE job_id = ?", (job_id,))
    return bool(row and row[0] is not None)


def _mark(store: JobStore, job_id: str, column: str, now: float) -> None:
    with store._tx() as db:
        db.execute("INSERT INTO retention (job_id) VALUES (?) ON CONFLICT (job_id) DO NOTHING", (job_id,))
        db.execute(f"UPDATE retention SET {column} = ? WHERE job_id = ?", (now, job_id))


def _all_jobs(store: JobStore) -> list[JobProgress]:
    ids = [r[0] for r in store._rows("SELECT id FROM jobs ORDER BY created_at", ())]
    return [job for job in (store.get(i) for i in ids) if job is not None]


def _spool_paths(job: JobProgress, spool_root: Path) -> list[Path]:
    root = spool_root.resolve()
    paths = []
    for raw in job.request.get("paths", []):
        path = Path(raw)
        try:
            inside = path.resolve().is_relative_to(root) and path.resolve() != root
        except OSError:
            continue
        if inside:
            paths.append(path)
    return paths


def _spooled_elsewhere(job: JobProgress, spool_root: Path) -> bool:
    """The job's files were spooled on another machine (workers on several machines): none
    of its paths is in this machine's spool, so their removal is that machine's."""
    return bool(job.request.get("paths")) and not _spool_paths(job, spool_root)


def _why_kept(job: JobProgress) -> str:
    """Why a job's texts must stay whatever its age; "" when nothing needs them."""
    if job.state not in FINAL_STATES:
        return f"it is {job.state}"
    if not job.planned or job.pending:
        return "it can still be resumed (it has memories not yet written)"
    return ""


def _size(paths: Sequence[Path]) -> tuple[int, int]:
    files = size = 0
    for top in paths:
        found = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()] if top.is_dir() else []
        files += len(found)
        size += sum(p.stat().st_size for p in found)
    return files, size


def _drop(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        parent = path.parent  # the spool folder copy_in made for this job, when it is empty now
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def apply_retention(store: JobStore, spool_root: Path, *, spool_keep_days: float | None,
                    prune_older_than_days: float | None, dry_run: bool = False,
                    now: float | None = None, forget_remote: Callable[[Sequence[Path]], None] | None = None) -> RetentionReport:
    """Release the spool of settled jobs that finished more than `spool_keep_days` ago and
    prune the texts of finished jobs older than `prune_older_than_days` (None: neither)."""
    now = time.time() if now is None else now
    report = RetentionReport(dry_run=dry_run)
    jobs = _all_jobs(store)
    release: dict[str, list[Path]] = {}
    prune: list[JobProgress] = []
    for job in jobs:
        if pruned_at(store, job.job_id) is not None:
            continue
        why = _why_kept(job)
        finished = job.finished_at or job.created_at
        if prune_older_than_days is not None and finished <= now - prune_older_than_days * DAY:
            if why:
                report.kept[job.job_id] = why
            else:
                prune.append(job)
                if not _spooled_elsewhere(job, spool_root):
                    release[job.job_id] = _spool_paths(job, spool_root)
                continue
        if spool_keep_days is None or why or job.failed or _released(store, job.job_id):
            continue
        if finished <= now - spool_keep_days * DAY and not _spooled_elsewhere(job, spool_root):
            release[job.job_id] = _spool_paths(job, spool_root)
    # A spooled path another job still needs stays (a job run again from the same files).
    needed = {p.resolve() for job in jobs if job.job_id not in release and not _released(store, job.job_id)
              and pruned_at(store, job.job_id) is None for p in _spool_paths(job, spool_root)}
    for job_id, paths in release.items():
        own = [p for p in paths if p.resolve() not in needed]
        files, size = _size(own)
        report.spool_files += files
        report.spool_bytes += size
        if files or own:
            report.spool_released.append(job_id)
        if not dry_run:
            _drop(own)
            if forget_remote is not None:  # the spool's bucket (MEMSYS_SPOOL_BACKEND=s3) lets them go too
                forget_remote(own)
            _mark(store, job_id, "spool_removed_at", now)
    for job in prune:
        items = int(store._one("SELECT COUNT(*) FROM items WHERE job_id = ? AND memory IS NOT NULL",
                               (job.job_id,))[0])
        report.pruned.append(job.job_id)
        report.pruned_items += items
        if not dry_run:
            with store._tx() as db:
                db.execute("UPDATE items SET memory = NULL WHERE job_id = ? AND memory IS NOT NULL", (job.job_id,))
            _mark(store, job.job_id, "texts_pruned_at", now)
    if not dry_run and report.pruned and store.path is not None:  # PostgreSQL's autovacuum does it there
        report.vacuumed_bytes = vacuum_if_worthwhile(store.path)
    return report


def vacuum_if_worthwhile(path: Path) -> int:
    """VACUUM the database when a quarter or more of its pages are free; returns the bytes
    it gave back (0 when it was not worth it, or another process held it busy)."""
    db = sqlite3.connect(str(path), timeout=5)
    try:
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        size = int(db.execute("PRAGMA page_size").fetchone()[0])
        if not pages or free / pages < _VACUUM_FREE_SHARE:
            return 0
        try:
            db.execute("VACUUM")
        except sqlite3.OperationalError:
            return 0  # busy: the next run tries again
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = int(db.execute("PRAGMA page_count").fetchone()[0])
        return max(0, (pages - after) * size)
    finally:
        db.close()
