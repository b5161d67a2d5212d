"""A job's files read by several `memsys worker` processes, under leases like the batches'
(memsys/workers/leases.py), in the job database's `file_reads` and `read_pieces` tables
(portable SQL, for SQLite and PostgreSQL).

The worker that plans a job of several files cuts them into parts (FileImport.read_parts)
and records one read lease per part, plus the lease of their merge (read 0). A worker
takes a part by taking its lease (the token goes up by one), reads it with the same
reader code as one machine does, and stores the pieces under its token, each write
fenced: a lease that ran out (its worker killed or paused) is taken over by another
worker with the next token, and the late writes of the one before are refused. When
every part is read, one worker takes the merge's lease and plans the job from the pieces
in file order (FileImport.merge), fenced the same way.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from memsys.jobs.imports import ReadPiece
from memsys.workers.leases import LeaseLost, LeaseTables

# The merge of a job's parts holds this read number.
MERGE = 0
# Pieces read back per query while merging.
_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class ReadLease:
    """A worker's lease on one part of a job's files (read 0: their merge)."""

    job_id: str
    read_no: int
    token: int
    paths: tuple[str, ...]
    taken_over: bool  # the part was someone else's, whose lease ran out

    @property
    def key(self) -> tuple[str, str, int]:
        return ("read", self.job_id, self.read_no)


class ReadLeases(LeaseTables):
    """The worker tables of the job database, with its files' reads."""

    def create_reads(self, job_id: str, parts: Sequence[Sequence[str]], lease_seconds: float) -> list[int]:
        """Record the parts to read (and their merge) as leases to take; whatever an
        earlier run read is dropped. Returns the parts' read numbers."""
        now = time.time()
        numbers = list(range(1, len(parts) + 1))
        with self._tx() as db:
            # Tokens go on from the run before: a reader of that run still going (paused)
            # holds a token no new lease has, so its writes stay refused.
            base = int(db.execute("SELECT COALESCE(MAX(token), 0) FROM file_reads WHERE job_id = ?", (job_id,)).fetchone()[0])
            db.execute("DELETE FROM read_pieces WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM file_reads WHERE job_id = ?", (job_id,))
            # The merge's lease has no expiry until the last part is read (`finish_read`).
            db.executemany(
                "INSERT INTO file_reads (job_id, read_no, paths, state, token, expires_at, created_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                [(job_id, MERGE, "[]", base, None, now)]
                + [(job_id, n, json.dumps(list(paths)), base, now + lease_seconds, now) for n, paths in zip(numbers, parts)],
            )
        return numbers

    def acquire_read(self, job_id: str, read_no: int, worker: str, lease_seconds: float) -> ReadLease | None:
        """Take a part's lease (free, or run out); None when it is settled or another
        worker's lease on it still holds. What a worker before stored for it is dropped."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state, token, paths, expires_at FROM file_reads WHERE job_id = ? AND read_no = ?",
                             (job_id, read_no)).fetchone()
            if row is None:
                return None
            state, token, paths, expires_at = row[0], int(row[1]), row[2], row[3]
            if not (state == "pending" or (state == "running" and (expires_at or 0) < now)):
                return None
            taken_over = state == "running"
            n = db.execute(
                "UPDATE file_reads SET state = 'running', token = ?, worker = ?, expires_at = ?, ocr_pages = 0, pieces = 0,"
                " taken_over = taken_over + ? WHERE job_id = ? AND read_no = ? AND token = ?",
                (token + 1, worker, now + lease_seconds, 1 if taken_over else 0, job_id, read_no, token),
            ).rowcount
            if n != 1:
                return None
            db.execute("DELETE FROM read_pieces WHERE job_id = ? AND read_no = ? AND token <= ?", (job_id, read_no, token))
        return ReadLease(job_id, read_no, token + 1, tuple(json.loads(paths)), taken_over)

    def _check(self, db: Any, lease: ReadLease, lease_seconds: float) -> None:
        """Inside a transaction: the lease is still this token's and has not run out (it is
        renewed); raises LeaseLost otherwise."""
        now = time.time()
        n = db.execute(
            "UPDATE file_reads SET expires_at = ? WHERE job_id = ? AND read_no = ? AND token = ? AND state = 'running'"
            " AND expires_at >= ?",
            (now + lease_seconds, lease.job_id, lease.read_no, lease.token, now),
        ).rowcount
        if n != 1:
            raise LeaseLost(f"read {lease.read_no}'s lease (token {lease.token}) is no longer this worker's")

    def renew_read(self, lease: ReadLease, lease_seconds: float) -> bool:
        """Extend a lease still held; False when it is lost."""
        try:
            with self._tx() as db:
                self._check(db, lease, lease_seconds)
        except LeaseLost:
            return False
        return True

    def read_fence(self, lease: ReadLease, lease_seconds: float) -> Callable[[Any], None]:
        """The check a write made under the lease runs in its own transaction."""
        return lambda db: self._check(db, lease, lease_seconds)

    def add_pieces(self, lease: ReadLease, first: int, pieces: Sequence[ReadPiece], lease_seconds: float) -> None:
        """Store pieces read under the lease (numbered from `first`); refused (LeaseLost)
        when the lease is no longer this token's."""
        with self._tx() as db:
            self._check(db, lease, lease_seconds)
            db.executemany(
                "INSERT INTO read_pieces (job_id, read_no, token, n, piece) VALUES (?, ?, ?, ?, ?)",
                [(lease.job_id, lease.read_no, lease.token, first + i, json.dumps(p.to_json(), ensure_ascii=False))
                 for i, p in enumerate(pieces)],
            )

    def read_ocr_pages(self, lease: ReadLease, pages: int) -> None:
        """Pages of the part read by OCR so far; the job shows the sum over its parts."""
        with self._tx() as db:
            db.execute("UPDATE file_reads SET ocr_pages = ? WHERE job_id = ? AND read_no = ? AND token = ?",
                       (pages, lease.job_id, lease.read_no, lease.token))
            db.execute("UPDATE jobs SET ocr_pages = (SELECT COALESCE(SUM(ocr_pages), 0) FROM file_reads WHERE job_id = ?),"
                       " heartbeat = ? WHERE id = ?", (lease.job_id, time.time(), lease.job_id))

    def finish_read(self, lease: ReadLease, worker: str, pieces: int, seconds: float, lease_seconds: float) -> None:
        """Mark the part read by `worker` (fenced: LeaseLost when the lease is no longer
        this token's). Once the last part is read, the merge's lease runs from now, so a
        merge whose hand-out was lost is handed out again."""
        now = time.time()
        with self._tx() as db:
            n = db.execute(
                "UPDATE file_reads SET state = 'done', done_by = ?, expires_at = NULL, pieces = ?, seconds = ?"
                " WHERE job_id = ? AND read_no = ? AND token = ? AND state = 'running' AND expires_at >= ?",
                (worker, pieces, seconds, lease.job_id, lease.read_no, lease.token, now),
            ).rowcount
            if n != 1:
                raise LeaseLost(f"read {lease.read_no}'s lease (token {lease.token}) is no longer this worker's")
            db.execute(
                "UPDATE file_reads SET expires_at = ? WHERE job_id = ? AND read_no = ? AND state = 'pending'"
                " AND NOT EXISTS (SELECT 1 FROM file_reads r WHERE r.job_id = ? AND r.read_no > ?"
                " AND r.state IN ('pending', 'running'))",
                (now + lease_seconds, lease.job_id, MERGE, lease.job_id, MERGE),
            )

    def release_read(self, lease: ReadLease, state: str) -> None:
        """Give a lease back: 'dropped' (the job was cancelled or stopped)."""
        with self._tx() as db:
            db.execute("UPDATE file_reads SET state = ?, expires_at = NULL WHERE job_id = ? AND read_no = ? AND token = ?"
                       " AND state = 'running'", (state, lease.job_id, lease.read_no, lease.token))

    def refused_read(self, lease: ReadLease) -> None:
        """Count a late write refused by the fence."""
        with self._tx() as db:
            db.execute("UPDATE file_reads SET refused = refused + 1 WHERE job_id = ? AND read_no = ?",
                       (lease.job_id, lease.read_no))

    def unsettled_reads(self, job_id: str) -> int:
        """Parts not read yet (the merge not counted)."""
        row = self._one("SELECT COUNT(*) FROM file_reads WHERE job_id = ? AND read_no > ? AND state IN ('pending', 'running')",
                        (job_id, MERGE))
        return int(row[0]) if row else 0

    def redo_dropped(self, job_id: str, lease_seconds: float) -> list[int]:
        """Parts dropped by a stop that was undone: pending again; returns their numbers."""
        rows = self._rows("SELECT read_no FROM file_reads WHERE job_id = ? AND read_no > ? AND state = 'dropped'"
                          " ORDER BY read_no", (job_id, MERGE))
        with self._tx() as db:
            db.execute("UPDATE file_reads SET state = 'pending', expires_at = ? WHERE job_id = ? AND read_no > ?"
                       " AND state = 'dropped'", (time.time() + lease_seconds, job_id, MERGE))
        return [int(r[0]) for r in rows]

    def drop_merge(self, job_id: str) -> None:
        """A job that stopped before its merge: the merge is not handed out again (a
        resume reads the files again)."""
        with self._tx() as db:
            db.execute("UPDATE file_reads SET state = 'dropped', expires_at = NULL WHERE job_id = ? AND read_no = ?"
                       " AND state = 'pending'", (job_id, MERGE))

    def drop_reads(self, job_id: str) -> None:
        """Drop what the job's reads stored (a cancelled job reads its files again when
        resumed); their rows stay, dropped, so the next run's tokens go on from theirs."""
        with self._tx() as db:
            db.execute("DELETE FROM read_pieces WHERE job_id = ?", (job_id,))
            db.execute("UPDATE file_reads SET state = 'dropped', expires_at = NULL WHERE job_id = ?", (job_id,))

    def clear_pieces(self, job_id: str) -> None:
        """Merged: the stored pieces go (the reads' rows stay: who read what)."""
        with self._tx() as db:
            db.execute("DELETE FROM read_pieces WHERE job_id = ?", (job_id,))

    def read_started(self, job_id: str) -> float | None:
        row = self._one("SELECT MIN(created_at) FROM file_reads WHERE job_id = ?", (job_id,))
        return float(row[0]) if row and row[0] is not None else None

    def ocr_pages_read(self, job_id: str) -> int:
        row = self._one("SELECT COALESCE(SUM(ocr_pages), 0) FROM file_reads WHERE job_id = ?", (job_id,))
        return int(row[0]) if row else 0

    def pieces(self, job_id: str) -> Iterator[ReadPiece]:
        """Every part's pieces as its last reader stored them, in file order."""
        parts = self._rows("SELECT read_no, token FROM file_reads WHERE job_id = ? AND read_no > ? AND state = 'done'"
                           " ORDER BY read_no", (job_id, MERGE))
        for part in parts:
            after = -1
            while True:
                rows = self._rows("SELECT n, piece FROM read_pieces WHERE job_id = ? AND read_no = ? AND token = ? AND n > ?"
                                  " ORDER BY n LIMIT ?", (job_id, part[0], part[1], after, _WINDOW))
                if not rows:
                    break
                for row in rows:
                    yield ReadPiece.from_json(json.loads(row[1]))
                after = int(rows[-1][0])

    def read_rows(self, job_id: str) -> list[dict[str, Any]]:
        """Every read lease of a job (read 0: the merge): who did it, its token, whether it
        was taken over, late writes refused, pieces and OCR pages."""
        rows = self._rows("SELECT read_no, paths, state, token, worker, done_by, taken_over, refused, ocr_pages, pieces,"
                          " seconds FROM file_reads WHERE job_id = ? ORDER BY read_no", (job_id,))
        return [{k: r[k] for k in r.keys()} for r in rows]

    def due_reads(self) -> list[tuple[str, int]]:
        """Reads (and merges) to hand out again: leases run out, and pending ones whose
        hand-out may have been lost."""
        rows = self._rows("SELECT job_id, read_no FROM file_reads WHERE state IN ('pending', 'running') AND expires_at < ?"
                          " ORDER BY job_id, read_no LIMIT 200", (time.time(),))
        return [(r[0], int(r[1])) for r in rows]

    def postpone_read(self, job_id: str, read_no: int, lease_seconds: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE file_reads SET expires_at = ? WHERE job_id = ? AND read_no = ? AND state = 'pending'",
                       (time.time() + lease_seconds, job_id, read_no))
