"""The import of files, as a kind of job (memsys/jobs/kinds.py): its items are the chunks
of the spooled files, read and cut when the job is planned; once every item is settled,
the stored chunks its documents no longer have are removed, and with `mirror` the
documents gone from the imported folder too.
"""
from __future__ import annotations

import hashlib
import stat
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from memsys.api import MemorySystem
from memsys.ingest.files import iter_memories
from memsys.ingest.readers import InputProblem, ReadTally
from memsys.ingest.workers import ReadCancelled
from memsys.jobs.kinds import JobContext, PlanWriter, item_name
from memsys.jobs.records import UNCHANGED, WRITTEN, ItemOutcome, JobDocument, PlannedItem
from memsys.jobs.request import ImportRequest, ocr_settings, read_limits
from memsys.logs import event, get_logger
from memsys.models import Memory
from memsys.store import MemoryFilter, StoredMemory

log = get_logger("pipeline")


@dataclass(frozen=True, slots=True)
class ReadPiece:
    """What reading a file gives planning, one piece at a time: a memory (its uuid, record,
    item name and document), a part that could not be read (an item failed at once, with
    its reason), or a warning about a part still read. Plain values, so a piece read by
    one `memsys worker` is stored in the job database and merged by another."""

    item: str
    reason: str = ""
    warning: bool = False
    uuid: str = ""
    memory: dict[str, Any] | None = None
    document_id: str = ""
    content_hash: str = ""
    project: str = ""
    repo: str = ""
    source_file: str = ""

    @classmethod
    def of(cls, piece: Memory | InputProblem) -> "ReadPiece":
        if isinstance(piece, InputProblem):
            return cls(piece.item, piece.reason, piece.warning)
        return cls(item_name(piece), uuid=piece.uuid, memory=piece.to_dict(), document_id=piece.document_id,
                   content_hash=piece.content_hash, project=piece.project, repo=piece.repo, source_file=piece.source_file)

    @property
    def is_memory(self) -> bool:
        return self.memory is not None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReadPiece":
        return cls(**data)


@dataclass(slots=True)
class _DocumentRead:
    """A document as planning reads it: its first chunk (where it came from), the hash of
    its chunks' hashes so far, and how many chunks it has."""

    first: ReadPiece
    digest: Any  # hashlib's sha256
    chunks: int = 0

    def record(self, document_id: str) -> JobDocument:
        first = self.first
        return JobDocument(document_id, first.project, first.repo, first.source_file, self.digest.hexdigest(), self.chunks)


# Files read together by one `memsys worker` (memsys/workers/work.py): consecutive small
# files that need no OCR, up to this many and this many bytes; any other file is read alone.
_GROUP_FILES = 16
_GROUP_BYTES = 1 * 2**20
_READ_ALONE = frozenset({".pdf", ".zip", ".tif", ".tiff", ".png", ".jpg", ".jpeg"})


class FileImport:
    """An import of the files a job's request names."""

    def __init__(self, system: MemorySystem) -> None:
        self._system = system

    @property
    def system(self) -> MemorySystem:
        return self._system

    def plan(self, job: JobContext) -> None:
        """Read and cut the spooled files; a file (or part of one) that cannot be read is an
        item failed at once, with its reason."""
        jobs, job_id, request = job.jobs, job.job_id, job.request
        jobs.reset_plan(job_id)
        pieces = self.read(request, request.paths, ReadTally(on_ocr_page=lambda pages: jobs.set_ocr_pages(job_id, pages)),
                           cancelled=lambda: jobs.cancel_requested(job_id))  # asked while a file is read: cancel acts inside it
        self.merge(job, pieces)

    def read(self, request: ImportRequest, paths: Sequence[str], tally: ReadTally,
             cancelled: Callable[[], bool]) -> Iterator[ReadPiece]:
        """The pieces of `paths` (all of a job's files, or the part a worker reads), in
        order; raises ReadCancelled once `cancelled` says yes while a file is read."""
        provider = self.system.router.provider
        for piece in iter_memories(
            [Path(p) for p in paths],
            request.defaults,
            mapping=request.mapping,
            chunking=request.chunking,
            provider=provider.name,
            model=provider.model,
            ocr=ocr_settings(self.system.settings),
            tally=tally,
            limits=read_limits(self.system.settings),
            cancelled=cancelled,
        ):
            yield ReadPiece.of(piece)

    @staticmethod
    def read_parts(paths: Sequence[str], remote: Mapping[str, int | None] | None = None) -> list[tuple[str, ...]]:
        """The job's files cut into parts that workers read one each, in order: a file that
        may need OCR, an archive, a folder or a large file alone, small ones together.
        `remote`: the size of a path this machine lacks (None for a folder), as the spool's
        bucket lists it."""
        parts: list[tuple[str, ...]] = []
        group: list[str] = []
        size = 0
        for raw in paths:
            path = Path(raw)
            try:
                if remote and raw in remote:
                    found = remote[raw]
                    is_file, bytes_ = found is not None, found or 0
                else:
                    info = path.stat()
                    is_file, bytes_ = stat.S_ISREG(info.st_mode), info.st_size
                small = is_file and bytes_ < _GROUP_BYTES and path.suffix.lower() not in _READ_ALONE
            except OSError:
                small, bytes_ = True, 0  # gone: its reader says so, in its place
            if not small or len(group) >= _GROUP_FILES or size + bytes_ > _GROUP_BYTES:
                if group:
                    parts.append(tuple(group))
                group, size = [], 0
            if small:
                group.append(raw)
                size += bytes_
            else:
                parts.append((raw,))
        if group:
            parts.append(tuple(group))
        return parts

    def merge(self, job: JobContext, pieces: Iterable[ReadPiece], fence: Callable[[Any], None] | None = None) -> bool:
        """Plan the job from its files' pieces in file order: its items (seq by seq, a memory
        an earlier item has settled as the same content), warnings and documents. False when
        cancel was asked meanwhile (the job stays unplanned: a resume plans again). `fence`
        (a worker's lease on the merge) is checked in each write and refuses a late one."""
        jobs, job_id, request = job.jobs, job.job_id, job.request
        started = time.monotonic()
        writer = PlanWriter(job, fence)
        documents: dict[str, _DocumentRead] = {}
        seq = 0
        try:
            for piece in pieces:
                if piece.warning:
                    writer.warn(piece)  # the file is still read; the warning is kept with the job
                    continue
                if piece.document_id:
                    document = documents.get(piece.document_id)
                    if document is None:
                        document = documents[piece.document_id] = _DocumentRead(piece, hashlib.sha256())
                    document.digest.update(piece.content_hash.encode("ascii"))
                    document.chunks += 1
                if not writer.add(self._planned(job, seq, piece)):
                    log.info("import %s cancelled while planning", job_id, extra=event("import.plan.cancelled"))
                    return False  # unplanned: a resume plans again from the spooled files
                seq += 1
        except ReadCancelled:
            return False  # unplanned, as above
        planned = writer.finish(d.record(document_id) for document_id, d in documents.items())
        seconds = time.monotonic() - started
        log.info("import %s planned in %.1f s: %d items, %d to process, %d repeated, %d could not be read",
                 job_id, seconds, planned.total, planned.pending, planned.unchanged, planned.failed,
                 extra=event("import.planned", items=planned.total, pending=planned.pending, repeated=planned.unchanged,
                             unreadable=planned.failed, files=len(request.paths), seconds=round(seconds, 3)))
        return True

    @staticmethod
    def _planned(job: JobContext, seq: int, piece: ReadPiece) -> PlannedItem:
        if not piece.is_memory:
            if job.request.config.log_errors:
                log.warning("%s: %s", piece.item, piece.reason,
                            extra=event("item.failed", item=piece.item, seq=seq, reason=piece.reason, error_type="input"))
            return PlannedItem.unreadable(seq, piece.item, piece.reason)
        return PlannedItem(seq, piece.uuid, piece.memory, piece.item)

    @staticmethod
    def stored_outcome(stored: StoredMemory, job_created: float) -> ItemOutcome:
        # Stored by this job before it was stopped: it counts as written, as it would have
        # in an uninterrupted run. Stored earlier: unchanged.
        created = stored.created_at.timestamp() if stored.created_at is not None else 0.0
        return WRITTEN if created >= job_created else UNCHANGED

    def complete(self, job: JobContext) -> float:
        # Only now, with every current chunk stored, do old ones go: a search during the
        # re-import always finds the document.
        self._remove_stale(job)
        if job.request.mirror and job.request.origin:
            self._remove_gone(job, job.request.origin)
        # Done means searchable: with asynchronous indexing, wait for the index queue.
        return job.wait_for_indexing()

    def _remove_stale(self, job: JobContext) -> None:
        """Remove the stored chunks each of the job's documents no longer has. A document
        with a failed or pending chunk keeps its old ones until a retry completes it."""
        jobs, job_id = job.jobs, job.job_id
        removed = 0
        store = self.system.store
        for document in jobs.documents(job_id):
            chunks = jobs.document_items(job_id, document)
            if not chunks.complete:
                continue
            stale = [u for u in store.document_ids(document.document_id) if u not in chunks.uuids]
            if stale:
                jobs.forget(stale)
                removed += store.delete_ids(stale)
        if removed:
            jobs.add_removed(job_id, removed)

    def _remove_gone(self, job: JobContext, origin: str) -> None:
        """Mirror: remove the documents an earlier import of the same origin had and this
        one does not."""
        jobs, job_id = job.jobs, job.job_id
        present = {d.document_id for d in jobs.documents(job_id)} | set(job.request.keep_documents)
        gone = jobs.gone_documents(origin, present, job_id)
        removed = sum(
            self.system.store.delete_matching(MemoryFilter(document_id=d.document_id), before_delete=jobs.forget)
            for d in gone
        )
        if removed:
            jobs.add_removed(job_id, removed)
