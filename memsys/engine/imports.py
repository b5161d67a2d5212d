"""Imports: files into the spool, a preview of what an import would do, and starting one."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

from memsys.access import action
from memsys.audit import AuditAction, AuditRecord
from memsys.config import BatchConfig
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.files import iter_memories, prestart_reader
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import FieldMapping, InputProblem, ReadTally, has_columns, structured_columns
from memsys.jobs import iter_chunks
from memsys.logs import default_actor
from memsys.jobs.batching import plan_sizes
from memsys.jobs.request import ImportRequest, embedder_name, ocr_settings, read_limits
from memsys.store import MemoryFilter, settle
from memsys.units import documents_title
from memsys.tasks import TaskProgress
from memsys.engine.calls import OPERATOR, VIEWER, Calls
from memsys.engine.records import ImportPreview, origin_key


@dataclass
class _DocumentComparison:
    """One document of a preview against the store: its memories by what they need, how
    many of its stored memories the files still have (`found`), and all it has stored."""

    name: str
    project: str
    repo: str
    to_write: int = 0
    to_update: int = 0
    unchanged: int = 0
    found: int = 0
    stored: int = 0

    def in_knowledge_base(self, defaults: MemoryDefaults) -> bool:
        return (self.project, self.repo) == (defaults.project, defaults.repo)


def _count_document(preview: ImportPreview, doc: _DocumentComparison, limit: int) -> None:
    """Add one compared document to the preview: new (nothing stored), unchanged (stored
    exactly so, no other chunk), or changed (its stored chunks it no longer has removed)."""
    memories = doc.to_write + doc.to_update + doc.unchanged
    preview.documents += 1
    preview.to_write += doc.to_write
    preview.to_update += doc.to_update
    preview.unchanged_memories += doc.unchanged
    if not doc.stored:
        preview.new_documents += 1
        preview.new_memories += memories - doc.unchanged
        if len(preview.new_names) < limit:
            preview.new_names.append(doc.name)
    elif doc.to_write or doc.to_update or doc.stored > doc.found:
        preview.changed_documents += 1
        preview.changed_memories += doc.to_write + doc.to_update
        preview.stale_memories += max(0, doc.stored - doc.found)
        if len(preview.changed_names) < limit:
            preview.changed_names.append(doc.name)
    else:
        preview.unchanged_documents += 1


class Imports(Calls):
    """Files into the spool, a preview of what an import would do, and starting one."""

    @action(OPERATOR, "uploading files")
    def spool_upload(self, upload_id: str, name: str, data: BinaryIO) -> Path:
        """Copy one uploaded file into the spool now (streamed, not held in memory). A name
        with '..' or an absolute path raises UnsafeNameError: nothing lands outside the spool."""
        return self._engine.spool.save_upload(upload_id, name, data)

    @action(OPERATOR, "copying files in for an import")
    def spool_paths(self, paths: Sequence[Path | str]) -> list[Path]:
        """Copy files and folders into a new spool folder; returns the copies. A reader
        worker starts meanwhile, for the import that follows."""
        prestart_reader(read_limits(self._engine.settings))
        return self._engine.spool.copy_in(paths)

    @staticmethod
    @action(VIEWER, "reading a file's columns")
    def is_structured(path: Path) -> bool:
        """True for files read as records (csv, tsv, jsonl), whose columns can be mapped."""
        return has_columns(Path(path))

    @staticmethod
    @action(VIEWER, "reading a file's columns")
    def columns_in(path: Path) -> list[str]:
        """The column names a structured file offers for mapping ([] when none can be read)."""
        return structured_columns(Path(path))

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def create(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        label: str = "",
        started_by: str = "",
        origin: Sequence[Path | str] = (),
        mirror: bool = False,
    ) -> str:
        """Record an import job for already-spooled paths; returns its id. Without a
        `config` the job uses the saved batch settings. `origin` names what was imported
        (the folders and files as the user gave them); with `mirror`, documents an earlier
        import of the same origin had and this one does not are removed when it completes."""
        if mirror and not origin:
            raise ValueError("a mirror import needs its origin: the folders or files it mirrors")
        engine = self._engine
        prestart_reader(read_limits(engine.settings))  # it boots while the job is recorded and claimed
        provider = engine.system.router.provider
        request = ImportRequest(
            paths=tuple(str(Path(p).resolve()) for p in paths),
            defaults=defaults,
            mapping=mapping,
            chunking=chunking,
            config=config or BatchConfig.saved(engine.settings.batch_config_path),
            label=label or documents_title([Path(p).name for p in paths])[:120],
            embedder=provider.fingerprint,
            embedder_name=embedder_name(provider),
            started_by=started_by,
            origin=origin_key(origin, defaults) if origin else "",
            mirror=mirror,
        )
        return engine.job_store.create_job(request.to_json())

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def start(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        label: str = "",
        started_by: str = "",
        origin: Sequence[Path | str] = (),
        mirror: bool = False,
        actor: str | None = None,
    ) -> str:
        """Create an import job for spooled paths and run it in the background (recorded
        in the audit trail as started by `actor`, else `started_by`)."""
        job_id = self.create(paths, defaults, mapping=mapping, chunking=chunking, config=config, label=label,
                             started_by=started_by, origin=origin, mirror=mirror)
        self.record_started(job_id, actor=actor or started_by or None)
        self._engine.runner.submit(job_id)
        return job_id

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def record_started(self, job_id: str, *, actor: str | None = None) -> AuditRecord:
        """Record who started an import (the CLI creates its job and runs it itself)."""
        request = self._engine.job_store.request(job_id)
        return self._engine.audit_trail.record(AuditAction.IMPORT_STARTED, actor or default_actor(), target=job_id, details={
            "label": request.get("label", ""), "files": [Path(p).name for p in request.get("paths", [])],
            "project": (request.get("defaults") or {}).get("project", ""),
        })

    @action(OPERATOR, "previewing an import")
    def preview(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        limit: int = 20,
        origin: Sequence[Path | str] = (),
        cancelled: Callable[[], bool] | None = None,
    ) -> ImportPreview:
        """Read the files as an import would and say what it would do; nothing is written.
        With `origin` (as a mirror import would be given it), also how many documents and
        memories a mirror import would remove. `cancelled` is asked while each file is
        read; when it says yes, ReadCancelled is raised within a quarter second, even
        inside a large file."""
        engine = self._engine
        config = config or BatchConfig.saved(engine.settings.batch_config_path)
        router = engine.system.router
        provider = router.provider
        store = engine.system.store
        started = time.monotonic()
        preview = ImportPreview(price_per_million_tokens=provider.price_per_million_tokens)
        tally = ReadTally()
        pieces = iter_memories([Path(p) for p in paths], defaults, mapping=mapping, chunking=chunking,
                               limits=read_limits(engine.settings),
                               provider=provider.name, model=provider.model,
                               ocr=ocr_settings(engine.settings), tally=tally, estimate_only=True, cancelled=cancelled)
        seen_texts: set[str] = set()
        seen_uuids: set[str] = set()
        documents: dict[str, _DocumentComparison] = {}
        for chunk in iter_chunks(pieces, 1000):
            memories = []
            for piece in chunk:
                if isinstance(piece, InputProblem):
                    preview.problems.append(piece)
                    continue
                preview.memories += 1
                if len(preview.sample) < limit:
                    preview.sample.append(piece)
                documents.setdefault(piece.document_id, _DocumentComparison(piece.source_file, piece.project, piece.repo))
                if piece.uuid not in seen_uuids:  # a repeat within the import is one memory
                    seen_uuids.add(piece.uuid)
                    memories.append(piece)
            existing = store.existing([m.uuid for m in memories]) if memories else {}
            settled = settle(memories, existing)
            for index in settled.unchanged:
                documents[memories[index].document_id].unchanged += 1
            for index in settled.to_update:
                documents[memories[index].document_id].to_update += 1
            for index in settled.to_write:
                documents[memories[index].document_id].to_write += 1
            for stored in existing.values():
                if stored.document_id in documents:
                    documents[stored.document_id].found += 1
            new_texts = []
            for index in settled.to_write:
                text = memories[index].content
                if text not in seen_texts:
                    seen_texts.add(text)
                    new_texts.append(text)
            preview.distinct += len(new_texts)
            if new_texts:
                cached = router.with_cache_dir(config.resolve_cache_dir(engine.settings.data_dir)).cached_texts(new_texts) \
                    if config.enable_cache else set()
                preview.cached += len(cached)
                preview.tokens += sum(provider.count_tokens(t) for t in new_texts if t not in cached)
            preview.batch_sizes.extend(plan_sizes(new_texts, config, provider.max_inputs_per_request))
        # What the knowledge base holds, per document, in one aggregate; a document outside
        # it (a row naming its own project) or past the aggregate's limit is counted alone.
        limit_counts = max(10_000, 2 * len(documents))
        stored = store.document_counts(MemoryFilter(project=defaults.project, repo=defaults.repo), limit_counts) \
            if defaults.project or defaults.repo else {}
        complete = len(stored) < limit_counts
        for document_id, doc in documents.items():
            if document_id in stored:
                doc.stored = stored[document_id]
            elif document_id and not (complete and doc.in_knowledge_base(defaults)):
                doc.stored = store.count(MemoryFilter(document_id=document_id))
            _count_document(preview, doc, limit)
        preview.ocr_pages = tally.ocr_pages
        preview.provider_calls = math.ceil(preview.to_embed / provider.max_inputs_per_request) if preview.to_embed else 0
        preview.estimated_cost_usd = preview.tokens / 1e6 * provider.price_per_million_tokens
        if origin:
            gone = engine.job_store.gone_documents(origin_key(origin, defaults), set(documents))
            preview.mirror_documents = len(gone)
            preview.mirror_memories = sum(store.count(MemoryFilter(document_id=d.document_id)) for d in gone)
        preview.read_seconds = time.monotonic() - started
        speed = engine.job_store.measured_speed()
        preview.speed_jobs = speed.jobs
        preview.estimated_seconds = speed.estimate(
            read_seconds=preview.read_seconds + preview.ocr_seconds, to_embed=preview.to_embed,
            to_write=preview.to_write + preview.to_update - preview.to_embed, to_check=len(seen_uuids))
        return preview

    @action(OPERATOR, "previewing an import")
    def start_preview(self, paths: Sequence[Path | str], defaults: MemoryDefaults, **options: Any) -> str:
        """`preview(paths, defaults, **options)` as a background task, so a page never waits
        on a slow file: poll it with `engine.tasks.get(task_id)` (its result is the
        ImportPreview), stop it with `engine.tasks.cancel` (the read stops inside the file
        it is in)."""
        paths = list(paths)

        def work(progress: TaskProgress) -> ImportPreview:
            return self.preview(paths, defaults, cancelled=progress.cancelled, **options)

        return self._engine.task_runner.submit("preview", work)
