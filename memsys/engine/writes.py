"""Writing memories one caller at a time, batched across callers: each call is checked,
audited and validated on its own, then joins the engine's write queue
(memsys/engine/coalescer.py), which writes concurrent callers' memories together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from memsys.access import action
from memsys.audit import AuditAction, AuditOutcome
from memsys.engine.calls import OPERATOR, VIEWER, Calls
from memsys.engine.coalescer import CoalescerStats, QueueFull
from memsys.logs import default_actor
from memsys.models import Memory, MemoryValidationError


@dataclass(frozen=True)
class WriteResult:
    """What happened to one memory of a write: `written`, `updated` (same content, new
    fields), `unchanged` (already stored as it is) or `failed`, with the reason."""

    index: int
    uuid: str
    status: str
    error: str = ""


class Writes(Calls):
    """Memories written by callers (the HTTP API, the MCP server), batched together, and
    the knowledge bases they write to."""

    @action(OPERATOR, "writing memories", audit=AuditAction.MEMORIES_WRITTEN)
    def write(self, records: Sequence[Mapping[str, Any] | Memory], *, projects: Sequence[str] = (),
              actor: str | None = None) -> list[WriteResult]:
        """Validate each record on its own (a bad one is `failed` with the field and the
        problem; the rest go in), then write the good ones with whatever other callers are
        writing now. With `projects`, a memory of another knowledge base (project) is
        refused. Returns one result per record, in order, once the memories have landed.
        Raises QueueFull when too many memories are waiting already. Recorded in the audit
        trail with the counts (by the write queue, with the other callers of its batch)."""
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
            raise ValueError("memories must be a list of memory records")
        engine = self._engine
        results: list[WriteResult | None] = [None] * len(records)
        valid: list[tuple[int, Memory]] = []
        for i, record in enumerate(records):
            try:
                memory = record if isinstance(record, Memory) else Memory.from_dict(record, i)
            except MemoryValidationError as e:
                results[i] = WriteResult(i, "", "failed", str(e))
                continue
            if projects and memory.project not in projects:
                results[i] = WriteResult(i, memory.uuid, "failed",
                                         f"memory #{i}: the knowledge base {memory.project!r} is not one this caller "
                                         "may write to")
                continue
            valid.append((i, memory))
        who = actor or default_actor()
        details: dict[str, Any] = {"count": len(records), "failed": len(records) - len(valid),
                                   "projects": sorted({m.project for _, m in valid})[:20]}
        if not valid:  # nothing to write: recorded here, as the queue would have
            engine.audit_trail.record(AuditAction.MEMORIES_WRITTEN, who, target=engine.system.store.collection_name,
                                      details={**details, "written": 0})
            return [r for r in results if r is not None]
        try:
            report = engine.write_queue.write([m for _, m in valid], audit=(who, details))
        except QueueFull as e:
            engine.audit_trail.record(AuditAction.MEMORIES_WRITTEN, who, target=engine.system.store.collection_name,
                                      outcome=AuditOutcome.REFUSED, details={**details, "reason": str(e)})
            raise
        for k, (i, memory) in enumerate(valid):
            if k in report.failed:
                results[i] = WriteResult(i, memory.uuid, "failed", f"memory #{i}: {report.failed[k]}")
            elif k in report.updated:
                results[i] = WriteResult(i, memory.uuid, "updated")
            elif k in report.unchanged:
                results[i] = WriteResult(i, memory.uuid, "unchanged")
            else:
                results[i] = WriteResult(i, memory.uuid, "written")
        return [r for r in results if r is not None]

    @action(VIEWER, "listing knowledge bases")
    def knowledge_bases(self) -> list[tuple[str, str, int, int]]:
        """(project, repo, documents, memories) of every knowledge base holding memories,
        those written by callers included (they have no document): what callers write to."""
        return self._engine.system.store.knowledge_bases()

    @action(VIEWER, "reading the write queue's figures")
    def stats(self) -> CoalescerStats:
        """Memories written through the queue, the batches they made, the embedding
        requests and Weaviate batches those took."""
        stats = self._engine.write_queue.stats
        return CoalescerStats(stats.memories, stats.batches, stats.embedding_requests, stats.weaviate_batches,
                              stats.largest_batch)
