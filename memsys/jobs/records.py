"""The records the job database takes and gives: a job's progress, its items as planned
and as settled, its failed items as people read them, and the documents an import read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memsys.embeddings.budget import BudgetStatus

ACTIVE_STATES = ("queued", "planning", "running", "cancelling")
FINAL_STATES = ("completed", "cancelled", "failed")
ITEM_STATES = ("pending", "written", "updated", "unchanged", "failed")
FAILED_PAGE = 500  # failed items are read this many at a time, never all at once


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
    # Memories embedded in batches not yet written and recorded (they are not in
    # `processed`): what moves the progress between two batches' records.
    embedded: int = 0

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


@dataclass(frozen=True, slots=True)
class DocumentChunks:
    """The chunks of one document in one job: their memories' uuids, and whether every
    one is settled (none pending or failed, and no failure of the file or a part of it)."""

    uuids: frozenset[str]
    complete: bool


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One item as planning adds it to a job: pending with the memory to write, or
    failed at once (a file or part of one that could not be read, with its reason)."""

    seq: int
    uuid: str | None
    memory: dict[str, Any] | None
    item: str  # how the item is named to the user
    state: str = "pending"
    reason: str = ""

    @classmethod
    def unreadable(cls, seq: int, item: str, reason: str) -> "PlannedItem":
        return cls(seq, None, None, item, "failed", reason)


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """How one item of a batch was settled: its state ("written", "updated", "unchanged"
    or "failed"), and for a failure its reason and kind of error."""

    state: str
    reason: str = ""
    error_type: str = ""

    @classmethod
    def failed(cls, reason: str, error_type: str) -> "ItemOutcome":
        return cls("failed", reason, error_type)


WRITTEN = ItemOutcome("written")
UPDATED = ItemOutcome("updated")
UNCHANGED = ItemOutcome("unchanged")


FAILED_COLUMNS = ("Item", "Reason", "Kind of error", "Can retry", "Content")


def failed_row(item: FailedItem) -> dict[str, Any]:
    """A failed item as people read it: the table on screen and the CSV download."""
    return dict(zip(FAILED_COLUMNS, (
        item.item, item.reason, item.error_type or "unknown", "yes" if item.retryable else "no (fix the file)",
        item.content_preview,
    )))
