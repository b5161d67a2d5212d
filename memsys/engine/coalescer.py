"""Writes from many callers, batched for them: each caller hands in its memories and
waits; one writer thread takes what has arrived within a short window (or until a batch
is full) and writes it as one `MemorySystem.write` (one existence check, one embedding
call for the cache misses, one Weaviate batch per `default_batch_size`), then answers each
caller with its own uuids and its own failures.

Guarantees: a caller is answered only after its memories landed in Weaviate (or failed)
and its audit record is written (the records of a batch's callers in one transaction), so
nothing acknowledged is lost if the process dies; the queue is bounded (`QueueFull`, with
how long to wait, instead of growing); thread-safe.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

from memsys.api import MemorySystem, WriteReport
from memsys.audit import AuditAction, AuditEntry, AuditOutcome, AuditTrail
from memsys.errors import MemsysError
from memsys.logs import event, get_logger
from memsys.models import Memory

log = get_logger("writes")


class QueueFull(MemsysError):
    """Too many memories are waiting to be written; try again after `retry_after` seconds."""

    def __init__(self, waiting: int, limit: int, retry_after: float) -> None:
        self.waiting, self.limit, self.retry_after = waiting, limit, retry_after
        super().__init__(f"{waiting} memories are waiting to be written (the limit is {limit}); "
                         f"try again in {math.ceil(retry_after)} s")


@dataclass
class CoalescerStats:
    """What the coalescer did since it started: memories taken, batches written (each one
    `MemorySystem.write`), embedding requests sent and Weaviate write batches made."""

    memories: int = 0
    batches: int = 0
    embedding_requests: int = 0
    weaviate_batches: int = 0
    largest_batch: int = 0


@dataclass
class _Pending:
    records: list[Memory]
    future: Future[WriteReport]
    audit: tuple[str, dict[str, Any]] | None  # (actor, details known before the write)


class WriteCoalescer:
    """One writer thread over one MemorySystem, started on first use."""

    def __init__(self, system: MemorySystem, window_ms: int = 20, queue_limit: int = 10_000,
                 audit_trail: AuditTrail | None = None) -> None:
        self.system = system
        self.audit_trail = audit_trail
        self.window = window_ms / 1000
        self.queue_limit = queue_limit
        self.stats = CoalescerStats()
        self._queue: deque[_Pending] = deque()
        self._waiting = 0  # memories in the queue
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._seconds_per_memory = 0.01  # learned: how long a memory takes to write, for Retry-After

    def write(self, records: Sequence[Memory], timeout: float | None = None,
              audit: tuple[str, dict[str, Any]] | None = None) -> WriteReport:
        """Write validated memories together with whatever else is waiting; returns this
        caller's report (indexes are this caller's). With `audit` (actor, details), the
        caller's `memories.written` record is written with the batch's. Raises QueueFull
        when the queue cannot take them, and what the write raised (Weaviate down) to
        every caller of the batch."""
        return self.submit(records, audit).result(timeout)

    def submit(self, records: Sequence[Memory], audit: tuple[str, dict[str, Any]] | None = None) -> Future[WriteReport]:
        future: Future[WriteReport] = Future()
        if not records:
            future.set_result(WriteReport(uuids=[]))
            return future
        with self._cond:
            if self._closed:
                raise RuntimeError("the write queue is closed")
            if self._waiting and self._waiting + len(records) > self.queue_limit:
                raise QueueFull(self._waiting, self.queue_limit,
                                max(1.0, self._waiting * self._seconds_per_memory))
            self._queue.append(_Pending(list(records), future, audit))
            self._waiting += len(records)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="memsys-write-coalescer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)

    def _take(self) -> list[_Pending] | None:
        """The next batch: the first caller waiting, then whoever arrives within the
        window, up to one batch's worth of memories. None when closed and empty."""
        limit = max(1, self.system.batch_config.default_batch_size)
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.window
            while self._waiting < limit and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken, n = [], 0
            while self._queue and (not taken or n + len(self._queue[0].records) <= limit):
                pending = self._queue.popleft()
                taken.append(pending)
                n += len(pending.records)
            self._waiting -= n
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            for pending in taken:
                pending.future.set_running_or_notify_cancel()
            records = [m for p in taken for m in p.records]
            started = time.monotonic()
            try:
                report = self.system.write(records)
            except BaseException as e:  # every caller of the batch hears it; the thread goes on
                log.warning("a batch of %d memories from %d callers was not written: %s", len(records), len(taken),
                            type(e).__name__, extra=event("writes.batch_failed", memories=len(records), callers=len(taken)))
                self._audit([(p, None, f"{type(e).__name__}: {e}") for p in taken])
                for pending in taken:
                    pending.future.set_exception(e)
                continue
            seconds = time.monotonic() - started
            self._seconds_per_memory = 0.8 * self._seconds_per_memory + 0.2 * seconds / len(records)
            stats = self.stats
            stats.memories += len(records)
            stats.batches += 1
            stats.embedding_requests += report.embedding_requests
            stats.weaviate_batches += report.weaviate_batches
            stats.largest_batch = max(stats.largest_batch, len(records))
            start, answers = 0, []
            for pending in taken:
                answers.append((pending, _slice(report, start, len(pending.records)), ""))
                start += len(pending.records)
            self._audit(answers)
            for pending, mine, _ in answers:
                pending.future.set_result(mine)  # type: ignore[arg-type]

    def _audit(self, answers: list[tuple[_Pending, WriteReport | None, str]]) -> None:
        """The callers' records, in one transaction, before any of them is answered. A job
        database that cannot be written is logged; the memories are stored all the same."""
        if self.audit_trail is None:
            return
        target = self.system.store.collection_name
        entries = []
        for pending, report, failure in answers:
            if pending.audit is None:
                continue
            actor, details = pending.audit
            if report is None:
                entries.append(AuditEntry(AuditAction.MEMORIES_WRITTEN, actor, target, AuditOutcome.FAILED,
                                          {**details, "reason": failure}))
                continue
            entries.append(AuditEntry(AuditAction.MEMORIES_WRITTEN, actor, target, AuditOutcome.DONE, {
                **details, "written": len(report.written), "updated": len(report.updated),
                "unchanged": len(report.unchanged), "failed": details.get("failed", 0) + len(report.failed)}))
        try:
            self.audit_trail.record_many(entries)
        except MemsysError as e:
            log.error("the audit records of %d writes could not be written: %s", len(entries), e,
                      extra=event("writes.audit_failed", callers=len(entries)))


def _slice(report: WriteReport, start: int, n: int) -> WriteReport:
    """One caller's part of a batch's report, with its own indexes."""
    end = start + n
    mine = WriteReport(uuids=report.uuids[start:end])
    mine.written = [i - start for i in report.written if start <= i < end]
    mine.updated = [i - start for i in report.updated if start <= i < end]
    mine.unchanged = [i - start for i in report.unchanged if start <= i < end]
    mine.failed = {i - start: reason for i, reason in report.failed.items() if start <= i < end}
    return mine
