"""A job's items in the job database: planned (with the warnings its files gave),
settled batch by batch with each batch's figures, reset for a retry, and read back as
people see them (failed items, warnings, errors by kind, metrics).
"""
from __future__ import annotations

import csv
import json
import time
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

from memsys.jobs.metrics import BatchMetrics, BatchRecord
from memsys.jobs.records import (
    FAILED_COLUMNS,
    FAILED_PAGE,
    ITEM_STATES,
    FailedItem,
    ItemOutcome,
    PendingItem,
    PlannedItem,
    failed_row,
)
from memsys.jobs.schema import JobTables


class ItemTables(JobTables):
    """The items, warnings and batches of jobs."""

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

    def add_items(self, job_id: str, items: Sequence[PlannedItem], warnings: Sequence[Any] = (),
                  fence: Callable[[Any], None] | None = None) -> None:
        """Add planned items, and warnings about files that were still read (anything with
        .item and .reason). An item whose memory an earlier item of the job already has is
        settled at once as unchanged, so each memory is written once per job. `fence` (a
        worker's lease) is called first inside the transaction and raises to refuse it."""
        if not items and not warnings:
            return
        with self._tx() as db:
            if fence is not None:
                fence(db)
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

    def record_batch(self, batch: BatchRecord, outcomes: Mapping[int, ItemOutcome],
                     fence: Callable[[Any], None] | None = None) -> None:
        """Store one batch's figures and its items' outcomes (by item seq) in one
        transaction, so counts and states never disagree. `fence` (a worker's batch lease,
        memsys/workers/leases.py) is called first inside the transaction and raises to
        refuse the record: nothing of it is written."""
        counts = {s: 0 for s in ITEM_STATES}
        for outcome in outcomes.values():
            counts[outcome.state] += 1
        with self._tx() as db:
            if fence is not None:
                fence(db)
            db.executemany(
                "UPDATE items SET state = ?, reason = ?, error_type = ?, attempts = attempts + 1 WHERE job_id = ? AND seq = ?",
                [(o.state, o.reason, o.error_type, batch.job_id, seq) for seq, o in sorted(outcomes.items())],
            )
            db.execute(
                "INSERT OR REPLACE INTO batches (job_id, batch_no, size, embed_seconds, write_seconds, seconds, cache_hits,"
                " cache_misses, written, unchanged, failed, retries, started_at, finished_at, error_type, updated,"
                " lookup_seconds, embedder_seconds, provider_wait_seconds, store_wait_seconds, tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (batch.job_id, batch.batch_no, batch.size, batch.embed_seconds, batch.write_seconds, batch.seconds,
                 batch.cache_hits, batch.cache_misses, batch.written, batch.unchanged, batch.failed, batch.retries,
                 batch.started_at, batch.finished_at, batch.error_type, batch.updated,
                 batch.lookup_seconds, batch.embedder_seconds, batch.provider_wait_seconds, batch.store_wait_seconds,
                 batch.tokens),
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
