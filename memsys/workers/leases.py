"""Batch leases, fencing tokens, workers and document claims, in the job database (their
tables are at the end of memsys/jobs/schema.py; portable SQL, for SQLite and PostgreSQL).

A job run by workers is cut into batches when it is planned; each batch is a lease row.
A worker takes a batch by taking its lease: the lease's token goes up by one and it
expires `lease_seconds` later unless the worker's heartbeat renews it. A batch whose lease
ran out (its worker was killed, or paused) is taken by another worker, with the next
token. A worker writes its results only while its token is the batch's and its lease has
not run out (`fence`, checked before the write to Weaviate and again in the transaction
that records the batch): a worker resumed after its lease ran out finds its token stale
and its late results are refused, so every item is settled exactly once.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from memsys.jobs.records import ACTIVE_STATES, PendingItem
from memsys.jobs.schema import JobTables

# The owner a job run by workers carries: no one process; alive while its heartbeat is.
QUEUE_OWNER = "workers"
UNSETTLED = ("pending", "running")
# A job run by workers whose heartbeat is older than this no longer holds its documents.
_CLAIM_STALE_SECONDS = 120.0


class LeaseLost(Exception):
    """A worker's lease on a batch is no longer its own (run out, or taken over): what it
    was about to write is refused."""


def worker_id() -> str:
    """This worker process's name: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Lease:
    job_id: str
    batch_no: int
    token: int
    seqs: tuple[int, ...]
    taken_over: bool  # the batch was someone else's, whose lease ran out

    @property
    def key(self) -> tuple[str, str, int]:
        return ("batch", self.job_id, self.batch_no)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker as `memsys workers` and the Jobs page show it."""

    worker: str
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat: float
    stopped_at: float | None
    batches_done: int
    current: tuple[str, ...]  # "job batch N" it holds now

    def state(self, lease_seconds: float, now: float | None = None) -> str:
        if self.stopped_at is not None:
            return "stopped"
        now = time.time() if now is None else now
        return "running" if now - self.heartbeat <= lease_seconds else "not heard from"


class LeaseTables(JobTables):
    """The worker tables of the job database."""

    # --- jobs and their batches --------------------------------------------------------
    def hand_to_workers(self, job_id: str) -> None:
        """The job is the workers' from now on (no one process owns it)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET owner = ?, heartbeat = ? WHERE id = ?", (QUEUE_OWNER, time.time(), job_id))

    def create_leases(self, job_id: str, batches: Sequence[Sequence[int]], lease_seconds: float) -> list[int]:
        """Record the job's batches (each a list of item seqs) as leases to take; the
        unsettled leases of an earlier run are replaced. Returns the batch numbers."""
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM batch_leases WHERE job_id = ? AND state <> 'done'", (job_id,))
            row = db.execute(
                "SELECT MAX(n) FROM (SELECT MAX(batch_no) AS n FROM batch_leases WHERE job_id = ?"
                " UNION ALL SELECT MAX(batch_no) AS n FROM batches WHERE job_id = ?) AS known",
                (job_id, job_id),
            ).fetchone()
            first = int(row[0] or 0) + 1
            numbers = list(range(first, first + len(batches)))
            db.executemany(
                "INSERT INTO batch_leases (job_id, batch_no, seqs, state, expires_at) VALUES (?, ?, ?, 'pending', ?)",
                [(job_id, n, json.dumps(list(seqs)), now + lease_seconds) for n, seqs in zip(numbers, batches)],
            )
        return numbers

    def acquire(self, job_id: str, batch_no: int, worker: str, lease_seconds: float) -> Lease | None:
        """Take the batch's lease (free, or run out); None when it is settled or another
        worker's lease on it still holds."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state, token, seqs, expires_at, worker FROM batch_leases WHERE job_id = ? AND batch_no = ?",
                             (job_id, batch_no)).fetchone()
            if row is None:
                return None
            state, token, seqs, expires_at = row[0], int(row[1]), row[2], row[3]
            if not (state == "pending" or (state == "running" and (expires_at or 0) < now)):
                return None
            taken_over = state == "running"
            db.execute(
                "UPDATE batch_leases SET state = 'running', token = ?, worker = ?, expires_at = ?,"
                " taken_over = taken_over + ? WHERE job_id = ? AND batch_no = ? AND token = ?",
                (token + 1, worker, now + lease_seconds, 1 if taken_over else 0, job_id, batch_no, token),
            )
        return Lease(job_id, batch_no, token + 1, tuple(json.loads(seqs)), taken_over)

    def renew(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend a lease still held (same token, not run out); False when it is lost."""
        now = time.time()
        with self._tx() as db:
            n = db.execute(
                "UPDATE batch_leases SET expires_at = ? WHERE job_id = ? AND batch_no = ? AND token = ? AND state = 'running'"
                " AND expires_at >= ?",
                (now + lease_seconds, lease.job_id, lease.batch_no, lease.token, now),
            ).rowcount
        return n == 1

    def fence(self, lease: Lease, worker: str) -> Callable[[Any], None]:
        """The check run inside the transaction that records the batch: the lease must
        still be this token's and not run out; the batch is marked done by `worker`.
        Raises LeaseLost otherwise (the transaction is rolled back)."""

        def check(db: Any) -> None:
            n = db.execute(
                "UPDATE batch_leases SET state = 'done', done_by = ?, expires_at = NULL"
                " WHERE job_id = ? AND batch_no = ? AND token = ? AND state = 'running' AND expires_at >= ?",
                (worker, lease.job_id, lease.batch_no, lease.token, time.time()),
            ).rowcount
            if n != 1:
                raise LeaseLost(f"batch {lease.batch_no}'s lease (token {lease.token}) is no longer this worker's")
            db.execute("UPDATE workers SET batches_done = batches_done + 1 WHERE id = ?", (worker,))

        return check

    def refused(self, lease: Lease) -> None:
        """Count a late write refused by the fence."""
        with self._tx() as db:
            db.execute("UPDATE batch_leases SET refused = refused + 1 WHERE job_id = ? AND batch_no = ?",
                       (lease.job_id, lease.batch_no))

    def release(self, lease: Lease, state: str) -> None:
        """Give a lease back: 'dropped' (the job was cancelled or stopped: its items stay
        pending for a resume) or 'done' (nothing was left to do)."""
        with self._tx() as db:
            db.execute(
                "UPDATE batch_leases SET state = ?, expires_at = NULL WHERE job_id = ? AND batch_no = ? AND token = ?"
                " AND state = 'running'",
                (state, lease.job_id, lease.batch_no, lease.token),
            )

    def pending_in(self, lease: Lease) -> list[PendingItem]:
        """The batch's items still pending (all of them, unless a worker before recorded it)."""
        out: list[PendingItem] = []
        seqs = list(lease.seqs)
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(f"SELECT seq, uuid, memory, item FROM items WHERE job_id = ? AND state = 'pending'"
                              f" AND seq IN ({marks}) ORDER BY seq", (lease.job_id, *chunk))
            out.extend(PendingItem(r["seq"], r["uuid"], json.loads(r["memory"]), r["item"]) for r in rows)
        return out

    def unsettled(self, job_id: str) -> int:
        row = self._one("SELECT COUNT(*) FROM batch_leases WHERE job_id = ? AND state IN ('pending', 'running')", (job_id,))
        return int(row[0]) if row else 0

    def lease_rows(self, job_id: str) -> list[dict[str, Any]]:
        """Every batch lease of a job: who did it, its token, whether it was taken over and
        how many late writes were refused."""
        rows = self._rows("SELECT batch_no, state, token, worker, done_by, taken_over, refused, seqs FROM batch_leases"
                          " WHERE job_id = ? ORDER BY batch_no", (job_id,))
        return [{k: r[k] for k in r.keys()} for r in rows]

    def batch_workers(self, job_id: str) -> dict[int, str]:
        """batch number -> the worker that recorded it."""
        rows = self._rows("SELECT batch_no, done_by FROM batch_leases WHERE job_id = ? AND done_by <> ''", (job_id,))
        return {int(r[0]): r[1] for r in rows}

    def due(self) -> list[tuple[str, int]]:
        """Batches to hand out (again): leases run out, and pending ones whose hand-out
        may have been lost (the queue's database restarted meanwhile)."""
        rows = self._rows("SELECT job_id, batch_no FROM batch_leases WHERE state IN ('pending', 'running') AND expires_at < ?"
                          " ORDER BY job_id, batch_no LIMIT 200", (time.time(),))
        return [(r[0], int(r[1])) for r in rows]

    def postpone(self, job_id: str, batch_no: int, lease_seconds: float) -> None:
        """A pending batch handed out again: the next check is a lease later."""
        with self._tx() as db:
            db.execute("UPDATE batch_leases SET expires_at = ? WHERE job_id = ? AND batch_no = ? AND state = 'pending'",
                       (time.time() + lease_seconds, job_id, batch_no))

    def jobs_to_complete(self) -> list[str]:
        """Jobs of the workers whose completion may have been lost: every batch settled,
        and either every item settled too or the job cancelling. (A job being planned
        again for a resume has settled batches of its last run and pending items: it is
        not one of them.)"""
        rows = self._rows(
            "SELECT id FROM jobs WHERE owner = ? AND state IN ('running', 'cancelling') AND planned = 1"
            " AND EXISTS (SELECT 1 FROM batch_leases b WHERE b.job_id = jobs.id)"
            " AND NOT EXISTS (SELECT 1 FROM batch_leases b WHERE b.job_id = jobs.id AND b.state IN ('pending', 'running'))"
            " AND (state = 'cancelling' OR NOT EXISTS (SELECT 1 FROM items i WHERE i.job_id = jobs.id AND i.state = 'pending'))",
            (QUEUE_OWNER,),
        )
        return [r[0] for r in rows]

    def beat_jobs(self, job_ids: Iterable[str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE jobs SET heartbeat = ? WHERE id = ?", [(now, j) for j in set(job_ids)])

    # --- workers -----------------------------------------------------------------------
    def register_worker(self, worker: str, concurrency: int) -> None:
        host, _, pid = worker.rpartition(":")
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO workers (id, host, pid, concurrency, started_at, heartbeat) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET concurrency = excluded.concurrency, started_at = excluded.started_at,"
                " heartbeat = excluded.heartbeat, stopped_at = NULL",
                (worker, host, int(pid), concurrency, now, now),
            )

    def worker_heartbeat(self, worker: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE workers SET heartbeat = ? WHERE id = ?", (time.time(), worker))

    def worker_stopped(self, worker: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE workers SET stopped_at = ? WHERE id = ?", (time.time(), worker))

    def workers(self, limit: int = 100) -> list[WorkerRow]:
        """The workers, most recently heard from first, each with the batches and the
        parts of files (memsys/workers/reads.py) it holds."""
        rows = self._rows("SELECT * FROM workers ORDER BY heartbeat DESC LIMIT ?", (limit,))
        held: dict[str, list[str]] = {}
        for r in self._rows("SELECT worker, job_id, read_no FROM file_reads WHERE state = 'running' ORDER BY job_id, read_no"):
            held.setdefault(r[0], []).append(f"{r[1]} reading files, part {r[2]}" if r[2] else f"{r[1]} planning")
        for r in self._rows("SELECT worker, job_id, batch_no FROM batch_leases WHERE state = 'running' ORDER BY job_id, batch_no"):
            held.setdefault(r[0], []).append(f"{r[1]} batch {r[2]}")
        return [WorkerRow(r["id"], r["host"], int(r["pid"]), int(r["concurrency"]), r["started_at"], r["heartbeat"],
                          r["stopped_at"], int(r["batches_done"]), tuple(held.get(r["id"], ())))
                for r in rows]

    # --- documents -----------------------------------------------------------------------
    def claim_documents(self, job_id: str, document_ids: Sequence[str]) -> list[str]:
        """Claim the documents a job replaces, so no two jobs replace one document at once;
        returns the other active jobs holding some of them ([] once claimed)."""
        now = time.time()
        with self._tx() as db:
            others: set[str] = set()
            active = ",".join("?" * len(ACTIVE_STATES))
            for start in range(0, len(document_ids), 500):
                chunk = list(document_ids[start:start + 500])
                marks = ",".join("?" * len(chunk))
                others.update(r[0] for r in db.execute(
                    f"SELECT DISTINCT c.job_id FROM document_claims c JOIN jobs j ON j.id = c.job_id"
                    f" WHERE c.document_id IN ({marks}) AND c.job_id <> ? AND j.state IN ({active}) AND j.heartbeat >= ?",
                    (*chunk, job_id, *ACTIVE_STATES, now - _CLAIM_STALE_SECONDS),
                ).fetchall())
            if others:
                return sorted(others)
            db.executemany(
                "INSERT INTO document_claims (document_id, job_id, claimed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (document_id) DO UPDATE SET job_id = excluded.job_id, claimed_at = excluded.claimed_at",
                [(d, job_id, now) for d in document_ids],
            )
        return []

    def release_documents(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM document_claims WHERE job_id = ?", (job_id,))
