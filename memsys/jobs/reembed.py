"""Re-embedding a store with another embedder, as a kind of job (memsys/jobs/kinds.py):
a job like any import (listed, followed, cancelled, resumed), whose items are the
memories of the collection searched now rather than files. It writes them, with their
uuids, fields and creation times, into a new physical collection made for the configured
embedder; once every one is there, the store's alias moves to it in one step, so search
never stops. The old collection stays until the operator drops it.
"""
from __future__ import annotations

from typing import Any

from memsys.api import MemorySystem
from memsys.jobs.kinds import PLAN_CHUNK, JobContext, PlanWriter, item_name
from memsys.jobs.records import WRITTEN, ItemOutcome, PlannedItem
from memsys.jobs.request import ImportRequest
from memsys.logs import event, get_logger
from memsys.store import StoredMemory, stored_to_memory

log = get_logger("reembed")


class Reembed:
    """One re-embed job: plan from the old collection, embed and write into the new one,
    then switch the alias."""

    def __init__(self, system: MemorySystem, request: ImportRequest) -> None:
        self._target = system.with_collection(request.reembed_into, physical=True)
        self.live = system.store  # the alias every search and import addresses
        self.source = system.store.with_collection(request.reembed_from, physical=True)

    @property
    def system(self) -> MemorySystem:
        """The new collection's system: the items are written there."""
        return self._target

    def plan(self, job: JobContext) -> None:
        """The items are the old collection's memories, read with Weaviate's cursor (no
        file is read again); each keeps its creation time."""
        jobs, job_id, request = job.jobs, job.job_id, job.request
        jobs.reset_plan(job_id)
        writer = PlanWriter(job)
        for seq, (stored, _) in enumerate(self.source.scan(page=PLAN_CHUNK)):
            memory = stored_to_memory(stored)
            record: dict[str, Any] = memory.to_dict()
            if stored.created_at is not None:
                record["created_at"] = stored.created_at.isoformat()
            if not writer.add(PlannedItem(seq, memory.uuid, record, item_name(memory) or f"memory {stored.uuid}")):
                return  # unplanned: a resume plans again from the old collection
        total = writer.finish().total
        log.info("re-embed %s planned: %d memories of %s into %s", job_id, total, request.reembed_from,
                 request.reembed_into, extra=event("reembed.planned", items=total, source=request.reembed_from,
                                                   target=request.reembed_into))

    @staticmethod
    def stored_outcome(stored: StoredMemory, job_created: float) -> ItemOutcome:
        # The new collection is this job's own: whatever it holds, this job wrote (before a
        # stop), and it keeps the old creation times, so they cannot tell.
        return WRITTEN

    def complete(self, job: JobContext) -> float:
        request = job.request
        # Searchable first (asynchronous indexing), then the switch: search never finds it
        # half built.
        waited = job.wait_for_indexing()
        live = self.live.live_collection()
        if live not in (request.reembed_from, request.reembed_into):
            # A later re-embed (or a restore) moved the store on: this one must not move it back.
            raise ValueError(f"{self.live.collection_name} has moved to {live} since this re-embed of "
                             f"{request.reembed_from} started; {request.reembed_into} was not switched to")
        self.live.switch_to(request.reembed_into)
        log.info("%s now searches %s (was %s)", self.live.collection_name, request.reembed_into, request.reembed_from,
                 extra=event("reembed.switched", source=request.reembed_from, target=request.reembed_into))
        return waited
