"""The pipeline's extension point: a kind of job (an import of files, a re-embed of a
collection) says where its items come from and what completes it; the pipeline
(memsys/jobs/pipeline.py) does the rest for every kind alike: batches, embedding,
writing, retries, per-item outcomes and per-batch records.

A kind implements `JobKind`. Its `plan` adds the job's items to the job database through
a `PlanWriter`, which adds them `PLAN_CHUNK` at a time, reports progress after each
chunk and tells the kind to stop once cancel is asked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from memsys.api import MemorySystem
from memsys.jobs.database import JobStore
from memsys.jobs.records import ItemOutcome, JobDocument, JobProgress, PlannedItem
from memsys.jobs.request import ImportRequest
from memsys.models import Memory
from memsys.store import StoredMemory

ProgressCallback = Callable[[JobProgress], None]
# Items planned per transaction: each chunk is one write, a progress report and a check
# for cancel.
PLAN_CHUNK = 500
PLAN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class JobContext:
    """One run of one job, as a kind sees it: the job, what it was asked, the job
    database, the memory system it writes into, and who wants its progress."""

    job_id: str
    request: ImportRequest
    jobs: JobStore
    system: MemorySystem
    on_progress: ProgressCallback | None = None

    def report_progress(self) -> None:
        """Hand the job's progress now to `on_progress`, when someone wants it."""
        if self.on_progress:
            self.on_progress(self.jobs.require(self.job_id))

    def wait_for_indexing(self) -> float:
        """Wait until what the job wrote is searchable (Weaviate's asynchronous index
        queue drained); returns the seconds waited."""
        return self.system.store.wait_for_indexing()


class JobKind(Protocol):
    """What one kind of job brings to the pipeline."""

    @property
    def system(self) -> MemorySystem:
        """The memory system the job's items are written into."""

    def plan(self, job: JobContext) -> None:
        """Add the job's items to the job database through a `PlanWriter` and finish it.
        Once cancel is asked (`PlanWriter.add` returns False) it returns at once: the
        pipeline marks the job cancelled, and it stays unplanned, so a resume plans again."""

    def stored_outcome(self, stored: StoredMemory, job_created: float) -> ItemOutcome:
        """What an item counts as whose memory the target already holds unchanged
        (`stored`; `job_created` is when the job was made)."""

    def complete(self, job: JobContext) -> float:
        """What the job does once every item is settled, before it counts as completed;
        returns the seconds it waited for the index (`JobContext.wait_for_indexing`)."""


@dataclass(slots=True)
class PlanWriter:
    """Adds a job's planned items (and warnings about files that were still read) to the
    job database `PLAN_CHUNK` at a time; `fence` (a worker's lease, memsys/workers/) is
    checked inside each write and refuses it by raising."""

    job: JobContext
    fence: Callable[[Any], None] | None = None
    _items: list[PlannedItem] = field(default_factory=list, init=False)
    _warnings: list[Any] = field(default_factory=list, init=False)
    _flushed: float = field(default_factory=time.monotonic, init=False)

    def add(self, item: PlannedItem) -> bool:
        """Plan one item; False once cancel was asked (the kind stops planning)."""
        self._items.append(item)
        # Every PLAN_CHUNK items, and at least every PLAN_SECONDS while files are read, so
        # the count of memories found moves on screen from the first file on.
        if len(self._items) < PLAN_CHUNK and time.monotonic() - self._flushed < PLAN_SECONDS:
            return True
        self._flush()
        self.job.report_progress()
        return not self.job.jobs.cancel_requested(self.job.job_id)

    def warn(self, problem: Any) -> None:
        """Keep a warning (anything with .item and .reason) with the job."""
        self._warnings.append(problem)

    def finish(self, documents: Iterable[JobDocument] | None = None) -> JobProgress:
        """Add what is left and the documents read, and mark the job planned."""
        self._flush()
        jobs, job_id = self.job.jobs, self.job.job_id
        if documents is not None:
            jobs.add_documents(job_id, documents)
        jobs.finish_planning(job_id)
        return jobs.require(job_id)

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        self.job.jobs.add_items(self.job.job_id, self._items, self._warnings, fence=self.fence)
        self._items, self._warnings = [], []


def item_name(memory: Memory) -> str:
    """How an item is named to the user: file, place in it, chunk."""
    parts = [memory.source_file or "record", memory.source_location]
    name = " ".join(p for p in parts if p)
    return f"{name} chunk {memory.chunk_index + 1}" if memory.source_file else name
