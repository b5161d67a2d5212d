"""The import pipeline: plan a job's items into the job store, then process them in
batches sized by text length (the seed's table), embedding the next batch while writer
threads store the current one, with retries, per-item outcomes and per-batch metrics.
Everything a batch did is recorded in one transaction, so a stop at any point loses
nothing and a resume finishes with the same result.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import logging
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import psutil
from weaviate.exceptions import WeaviateBaseError

from memsys.api import MemorySystem, check_embedder
from memsys.config import BatchConfig, Settings, redact_url
from memsys.embeddings.providers import EmbeddingProvider
from memsys.embeddings.router import EmbeddingResult, EmbeddingRouter
from memsys.errors import EmbeddingProviderError, InputTooLongError, ServerStoppedError, scrub
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.files import iter_memories
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import FieldMapping, InputProblem, OcrSettings, ReadLimits, ReadTally
from memsys.ingest.workers import ReadCancelled
from memsys.jobs import JobDocument, JobProgress, JobStore, PendingItem
from memsys.logs import event, get_logger, job_context
from memsys.metrics import BatchRecord
from memsys.models import Memory
from memsys.retry import RetryPolicy, log_retry
from memsys.store import MemoryFilter, StoredMemory, is_replica_error, settle

log = get_logger("pipeline")
_START_RETRY = RetryPolicy(5, 0.5, 4.0)  # about 10 s of retries for the reads that open a job
ProgressCallback = Callable[[JobProgress], None]
_PLAN_CHUNK = 500
_FETCH_WINDOW = 1000


@dataclass(frozen=True)
class ImportRequest:
    """Everything a job needs to run again from scratch: spooled paths and settings."""

    paths: tuple[str, ...]
    defaults: MemoryDefaults
    mapping: FieldMapping | None = None
    chunking: ChunkSettings | None = None
    config: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    label: str = ""
    # The embedder the job started with (provider fingerprint and a readable name): a
    # resume with other embedding settings would mix two models' vectors in one collection.
    embedder: str = ""
    embedder_name: str = ""
    started_by: str = ""  # who started it: a signed-in user, or "" (the CLI, a script)
    # What was imported, in the user's terms (the folder or files given), and whether the
    # import mirrors it: documents an earlier import of the same origin had and this one
    # does not are removed once it completes.
    origin: str = ""
    mirror: bool = False
    # A re-embed job (memsys/reembed.py): the memories of the physical collection
    # `reembed_from` are embedded again into the new collection `reembed_into`.
    reembed_from: str = ""
    reembed_into: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "defaults": dataclasses.asdict(self.defaults),
            "mapping": dataclasses.asdict(self.mapping) if self.mapping else None,
            "chunking": dataclasses.asdict(self.chunking) if self.chunking else None,
            "config": self.config.to_dict(),
            "label": self.label,
            "embedder": self.embedder,
            "embedder_name": self.embedder_name,
            "started_by": self.started_by,
            "origin": self.origin,
            "mirror": self.mirror,
            "reembed_from": self.reembed_from,
            "reembed_into": self.reembed_into,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImportRequest":
        defaults = dict(data["defaults"])
        defaults["tags"] = tuple(defaults.get("tags") or ())
        return cls(
            paths=tuple(data["paths"]),
            defaults=MemoryDefaults(**defaults),
            mapping=FieldMapping(**data["mapping"]) if data.get("mapping") else None,
            chunking=ChunkSettings(**data["chunking"]) if data.get("chunking") else None,
            config=BatchConfig.from_dict(data.get("config") or {}),
            label=data.get("label", ""),
            embedder=data.get("embedder", ""),
            embedder_name=data.get("embedder_name", ""),
            started_by=data.get("started_by", ""),
            origin=data.get("origin", ""),
            mirror=bool(data.get("mirror", False)),
            reembed_from=data.get("reembed_from", ""),
            reembed_into=data.get("reembed_into", ""),
        )


def read_limits(settings: Settings) -> ReadLimits:
    """What one file may cost an import (README, "Limits on what is read")."""
    return ReadLimits(seconds_per_file=settings.read_seconds_per_file)


def embedder_name(provider: EmbeddingProvider) -> str:
    where = f" at {redact_url(provider.base_url)}" if provider.base_url else ""
    return f"{provider.name} / {provider.model}{where}"


def item_name(memory: Memory) -> str:
    """How an item is named to the user: file, place in it, chunk."""
    parts = [memory.source_file or "record", memory.source_location]
    name = " ".join(p for p in parts if p)
    return f"{name} chunk {memory.chunk_index + 1}" if memory.source_file else name


class AdaptiveBatchSizer:
    """The seed's adaptive sizing: halve the batch cap while resident memory is over the
    limit, grow it by 10 while memory is under half of it."""

    def __init__(self, config: BatchConfig, rss: Callable[[], int] | None = None) -> None:
        self.config = config
        self.cap = config.max_batch_size
        process = psutil.Process()
        self._rss = rss or (lambda: process.memory_info().rss)

    def observe(self) -> int:
        mb = self._rss() / 2**20
        limit = self.config.memory_limit_mb
        if mb > limit:
            self.cap = max(self.config.min_batch_size, self.cap // 2)
        elif mb < limit * 0.5:
            self.cap = min(self.config.max_batch_size, self.cap + 10)
        return self.cap


def plan_batches(items: Iterable[PendingItem], config: BatchConfig, cap: Callable[[], int], max_inputs: int) -> Iterator[list[PendingItem]]:
    """Group items into batches: a batch is as large as the seed's size for its longest
    text allows, never over the adaptive cap (read once per batch) or the provider's
    per-request limit."""
    batch: list[PendingItem] = []
    limit = 0
    ceiling = min(cap(), max_inputs)
    for item in items:
        size = min(config.get_batch_size_for_text(item.memory["content"]), ceiling)
        new_limit = min(limit, size) if batch else size
        if batch and len(batch) + 1 > new_limit:
            yield batch
            ceiling = min(cap(), max_inputs)
            batch, new_limit = [], min(config.get_batch_size_for_text(item.memory["content"]), ceiling)
        batch.append(item)
        limit = new_limit
    if batch:
        yield batch


@dataclass
class _PreparedBatch:
    batch_no: int
    started_at: float
    size: int
    to_write: list[tuple[PendingItem, Memory]] = dataclasses.field(default_factory=list)
    # Same content, new metadata: rewritten with their stored vectors (created_at kept).
    to_update: list[tuple[PendingItem, Memory, Any]] = dataclasses.field(default_factory=list)
    vectors: Any = None
    created_at: list[Any] = dataclasses.field(default_factory=list)  # of what is rewritten
    outcomes: dict[int, tuple[str, str, str]] = dataclasses.field(default_factory=dict)  # seq -> (state, reason, error_type)
    names: dict[int, str] = dataclasses.field(default_factory=dict)  # seq -> the item's name, for the log
    embed_seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0


def _is_permanent_write_error(message: str) -> bool:
    m = message.lower()
    return any(word in m for word in ("vector length", "dimension", "invalid", "validation", "no such prop", "wrong data type"))


def ocr_settings(settings: Settings) -> OcrSettings:
    """The OCR of scanned pages as the operator set it (MEMSYS_OCR, MEMSYS_OCR_LANGUAGES)."""
    return OcrSettings(enabled=settings.ocr_enabled, languages=settings.ocr_languages)


class ImportPipeline:
    """Runs jobs: plan, then embed and write in overlapped batches."""

    def __init__(self, system: MemorySystem, jobs: JobStore) -> None:
        self.system = system
        self.jobs = jobs
        # Seconds the last completed job waited for Weaviate's index queue to drain.
        self.last_index_wait = 0.0

    # --- the whole job -----------------------------------------------------------------
    def run(self, job_id: str, on_progress: ProgressCallback | None = None) -> JobProgress:
        """Run (or resume) a job to its end in this thread; returns its final progress."""
        with job_context(job_id):
            return self._run(job_id, on_progress)

    def _run(self, job_id: str, on_progress: ProgressCallback | None) -> JobProgress:
        jobs = self.jobs
        started = time.monotonic()
        request = ImportRequest.from_json(jobs.request(job_id))
        jobs.claim(job_id)
        log.info("import %s started: %s", job_id, request.label, extra=event("import.started", label=request.label))
        try:
            provider = self.system.router.provider
            # Jobs started before cache keys left the endpoint out recorded the old fingerprint.
            same_embedder = {provider.fingerprint, *(provider.legacy_fingerprint(u) for u in provider.base_urls)}
            if request.embedder and request.embedder not in same_embedder:
                jobs.set_state(
                    job_id,
                    "failed",
                    f"this import was started with the embedder {request.embedder_name}; it is set to "
                    f"{embedder_name(provider)} now. Resume it with the same embedding settings, so one "
                    "collection never mixes two models' vectors",
                )
                return jobs.require(job_id)
            # A schema read at the start: a cluster answers 500 for a few seconds after a node
            # dies, so it is retried for about ten seconds whatever the job's own retry count.
            _START_RETRY.run(
                lambda: check_embedder(self.system),
                is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
                what="the collection's embedder check",
            )
            job = jobs.require(job_id)
            if not job.planned:
                self._plan(job_id, request, on_progress)
            else:
                jobs.finish_planning(job_id)
            if jobs.cancel_requested(job_id):
                jobs.set_state(job_id, "cancelled")
                return jobs.require(job_id)
            # Several endpoints must serve one model: refused here, before a vector is written.
            provider.verify()
            self.system.store.client  # (re)starts this data directory's server if it is down
            with self.system.store.import_running():
                stopped_early = self._process(job_id, request.config, on_progress)
            if jobs.cancel_requested(job_id):
                jobs.set_state(job_id, "cancelled")
            elif stopped_early:
                jobs.set_state(job_id, "failed", stopped_early)
            else:
                self._complete(job_id, request)
                jobs.set_state(job_id, "completed")
        except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
            log.error("import %s stopped: %s", job_id, e, exc_info=True, extra=event("import.stopped", error=type(e).__name__))
            jobs.record_stop(job_id, "failed", self._plain(e))
        final = jobs.require(job_id)
        seconds = time.monotonic() - started
        log.log(logging.INFO if final.state == "completed" and not final.failed else logging.WARNING,
                "import %s %s in %.1f s: %d written, %d updated, %d unchanged, %d failed of %d items%s", job_id,
                final.state, seconds, final.written, final.updated, final.unchanged, final.failed, final.total,
                f"; {final.error}" if final.error else "",
                extra=event("import.done", state=final.state, written=final.written, updated=final.updated,
                            removed=final.removed, unchanged=final.unchanged,
                            failed=final.failed, total=final.total, pending=final.pending, batches=final.batches_done,
                            seconds=round(seconds, 3), error=final.error))
        if on_progress:
            on_progress(final)
        return final

    def _complete(self, job_id: str, request: ImportRequest) -> None:
        """What a job does once every item is settled, before it counts as completed."""
        # Only now, with every current chunk stored, do old ones go: a search
        # during the re-import always finds the document.
        self._remove_stale(job_id)
        if request.mirror and request.origin:
            self._remove_gone(job_id, request.origin)
        # Done means searchable: with asynchronous indexing, wait for the index queue.
        self.last_index_wait = self.system.store.wait_for_indexing()

    def _plain(self, e: BaseException) -> str:
        s = self.system.settings
        message = scrub(str(e), s.secrets)
        return f"the import stopped: {message}" if message else f"the import stopped: {type(e).__name__}"

    # --- planning ----------------------------------------------------------------------
    def _plan(self, job_id: str, request: ImportRequest, on_progress: ProgressCallback | None) -> None:
        jobs = self.jobs
        jobs.reset_plan(job_id)
        started = time.monotonic()
        provider = self.system.router.provider
        tally = ReadTally(on_ocr_page=lambda pages: jobs.set_ocr_pages(job_id, pages))
        pieces = iter_memories(
            [Path(p) for p in request.paths],
            request.defaults,
            mapping=request.mapping,
            chunking=request.chunking,
            provider=provider.name,
            model=provider.model,
            ocr=ocr_settings(self.system.settings),
            tally=tally,
            limits=read_limits(self.system.settings),
            cancelled=lambda: jobs.cancel_requested(job_id),  # asked while a file is read: cancel acts inside it
        )
        rows: list[tuple[int, str | None, dict[str, Any] | None, str, str, str]] = []
        warnings: list[InputProblem] = []
        documents: dict[str, tuple[Memory, Any, int]] = {}  # id -> (first chunk, hash so far, chunks)
        seq = 0
        try:
            for piece in pieces:
                if isinstance(piece, InputProblem) and piece.warning:
                    warnings.append(piece)  # the file is still read; the warning is kept with the job
                    continue
                if not isinstance(piece, InputProblem) and piece.document_id:
                    first, digest, n = documents.get(piece.document_id) or (piece, hashlib.sha256(), 0)
                    digest.update(piece.content_hash.encode("ascii"))
                    documents[piece.document_id] = (first, digest, n + 1)
                self._plan_piece(job_id, request, seq, piece, rows)
                seq += 1
                if len(rows) >= _PLAN_CHUNK:
                    jobs.add_items(job_id, rows, warnings)
                    rows, warnings = [], []
                    if on_progress:
                        on_progress(jobs.require(job_id))
                    if jobs.cancel_requested(job_id):
                        log.info("import %s cancelled while planning", job_id, extra=event("import.plan.cancelled"))
                        return  # unplanned: a resume plans again from the spooled files
        except ReadCancelled:
            return  # unplanned, as above
        jobs.add_items(job_id, rows, warnings)
        jobs.add_documents(job_id, (
            JobDocument(doc_id, first.project, first.repo, first.source_file, digest.hexdigest(), n)
            for doc_id, (first, digest, n) in documents.items()
        ))
        jobs.finish_planning(job_id)
        job = jobs.require(job_id)
        seconds = time.monotonic() - started
        log.info("import %s planned in %.1f s: %d items, %d to process, %d repeated, %d could not be read",
                 job_id, seconds, job.total, job.pending, job.unchanged, job.failed,
                 extra=event("import.planned", items=job.total, pending=job.pending, repeated=job.unchanged,
                             unreadable=job.failed, files=len(request.paths), seconds=round(seconds, 3)))

    @staticmethod
    def _plan_piece(job_id: str, request: ImportRequest, seq: int, piece: Memory | InputProblem,
                    rows: list[tuple[int, str | None, dict[str, Any] | None, str, str, str]]) -> None:
        if isinstance(piece, InputProblem):
            rows.append((seq, None, None, piece.item, "failed", piece.reason))
            if request.config.log_errors:
                log.warning("%s: %s", piece.item, piece.reason,
                            extra=event("item.failed", item=piece.item, seq=seq, reason=piece.reason, error_type="input"))
        else:
            rows.append((seq, piece.uuid, piece.to_dict(), item_name(piece), "pending", ""))

    # --- keeping the store equal to the documents ----------------------------------------
    def _remove_stale(self, job_id: str) -> None:
        """Remove the stored chunks each of the job's documents no longer has. A document
        with a failed or pending chunk keeps its old ones until a retry completes it."""
        removed = 0
        store = self.system.store
        for document in self.jobs.documents(job_id):
            current, complete = self.jobs.document_items(job_id, document)
            if not complete:
                continue
            stale = [u for u in store.document_ids(document.document_id) if u not in current]
            if stale:
                self.jobs.forget(stale)
                removed += store.delete_ids(stale)
        if removed:
            self.jobs.add_removed(job_id, removed)

    def _remove_gone(self, job_id: str, origin: str) -> None:
        """Mirror: remove the documents an earlier import of the same origin had and this
        one does not."""
        gone = self.jobs.gone_documents(origin, {d.document_id for d in self.jobs.documents(job_id)}, job_id)
        removed = sum(
            self.system.store.delete_matching(MemoryFilter(document_id=d.document_id), before_delete=self.jobs.forget)
            for d in gone
        )
        if removed:
            self.jobs.add_removed(job_id, removed)

    # --- processing --------------------------------------------------------------------
    def _process(self, job_id: str, config: BatchConfig, on_progress: ProgressCallback | None) -> str:
        """Process every pending item; returns "" or why the job stopped early."""
        jobs = self.jobs
        job_created = jobs.require(job_id).created_at
        retry = RetryPolicy(config.max_retries, config.base_retry_delay, config.max_retry_delay)
        sizer = AdaptiveBatchSizer(config)
        embedder = _JobEmbedder(
            self.system.router.with_cache_dir(config.resolve_cache_dir(self.system.settings.data_dir)),
            use_cache=config.enable_cache,
            retry=retry,
        )
        provider = self.system.router.provider
        max_inputs = provider.max_inputs_per_request
        hashes = {d.document_id: d.document_hash for d in jobs.documents(job_id)}
        budget = getattr(provider, "budget", None)
        if budget is not None:
            settings = self.system.settings
            budget.configure(config.requests_per_minute or settings.embedding_requests_per_minute,
                             config.tokens_per_minute or settings.embedding_tokens_per_minute)
        # Enough batches in flight to fill every endpoint's slots (a remote provider's round
        # trip is hidden by concurrency; the budget, not this number, keeps it under its limit).
        parallel = max(config.embed_workers, provider.parallelism)
        work: queue.Queue[_PreparedBatch | None] = queue.Queue(maxsize=config.queue_depth)
        stop_reason: list[str] = []
        writers = [
            threading.Thread(target=self._writer, args=(job_id, work, retry, config, stop_reason, on_progress), daemon=True,
                             name=f"memsys-writer-{i}")
            for i in range(config.write_workers)
        ]
        for w in writers:
            w.start()
        batch_no = jobs.next_batch_no(job_id)
        # `embed_workers` batches are prepared at once: while one waits for the embedder,
        # another checks what Weaviate already has. Prepared batches go to the writers.
        in_flight: set[Future[None]] = set()
        known: dict[str, StoredMemory | None] = {}

        def prepare(number: int, batch: list[PendingItem]) -> None:
            with job_context(job_id, number):
                prepared = self._prepare(job_id, number, batch, job_created, retry, known, embedder, hashes)
            if not config.continue_on_error and not stop_reason:
                # Known now, not only once the writer has recorded the batch: no new batch starts.
                failed = [r for s, r, _ in prepared.outcomes.values() if s == "failed"]
                if failed:
                    stop_reason.append(f"batch {number} had failures and continue_on_error is off: {failed[0]}")
            work.put(prepared)

        try:
            with ThreadPoolExecutor(parallel, thread_name_prefix="memsys-embed") as pool:
                for batch in plan_batches(self._pending(job_id, known), config, sizer.observe, max_inputs):
                    if stop_reason or jobs.cancel_requested(job_id):
                        break
                    while len(in_flight) >= parallel:
                        # Whichever batch is done first frees its slot: one slow answer does not
                        # hold the other endpoints idle behind it.
                        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in done:
                            in_flight.discard(future)
                            future.result()
                    jobs.heartbeat(job_id, batch_no)
                    in_flight.add(pool.submit(prepare, batch_no, batch))
                    batch_no += 1
                for future in in_flight:
                    future.result()
        finally:
            for _ in writers:
                work.put(None)
            for w in writers:
                w.join()
        return stop_reason[0] if stop_reason else ""

    def _pending(self, job_id: str, known: dict[str, StoredMemory | None]) -> Iterator[PendingItem]:
        """Pending items in order, a window at a time. What Weaviate already holds for a
        window is asked in one query and left in `known` (uuid -> stored or None) for the
        batches; if that query fails, each batch asks again for itself, with retries."""
        after = -1
        while True:
            window = self.jobs.pending_items(job_id, after_seq=after, limit=_FETCH_WINDOW)
            if not window:
                return
            uuids = [item.uuid for item in window]
            try:
                stored = self.system.store.existing(uuids)
            except (WeaviateBaseError, OSError) as e:
                log.warning("Weaviate did not answer which of %d items it holds (each batch asks again): %s", len(uuids), e,
                            extra=event("store.lookup.failed", items=len(uuids), error=type(e).__name__, reason=str(e)))
                stored = None
            if stored is not None:
                known.update((u, stored.get(u)) for u in uuids)
            yield from window
            after = window[-1].seq

    def _prepare(
        self,
        job_id: str,
        batch_no: int,
        batch: list[PendingItem],
        job_created: float,
        retry: RetryPolicy,
        known: dict[str, StoredMemory | None],
        embedder: "_JobEmbedder",
        hashes: dict[str, str],
    ) -> _PreparedBatch:
        """Decide what each item needs (nothing, a rewrite of its metadata, or embedding
        and writing) and embed."""
        started = time.time()
        memories = []
        kept_created: dict[str, Any] = {}  # uuid -> the creation time an item carries (a re-embed's)
        for item in batch:
            record = dict(item.memory)
            created_raw = record.pop("created_at", None)
            m = Memory.from_dict(record)
            if created_raw:
                kept_created[m.uuid] = dt.datetime.fromisoformat(created_raw)
            memories.append(dataclasses.replace(m, document_hash=hashes[m.document_id]) if m.document_id in hashes else m)
        prepared = _PreparedBatch(batch_no, started, len(batch), names={item.seq: item.item for item in batch})
        existing: dict[str, StoredMemory] = {}
        unknown = []
        for m in memories:
            if m.uuid in known:
                stored = known.pop(m.uuid)
                if stored is not None:
                    existing[m.uuid] = stored
            else:
                unknown.append(m.uuid)
        try:
            if unknown:
                existing.update(retry.run(
                    lambda: self.system.store.existing(unknown),
                    is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
                    what=f"a Weaviate lookup of {len(unknown)} items",
                ))
        except (WeaviateBaseError, OSError) as e:  # every item gets this reason; retry-failed clears it
            self._raise_if_server_stopped(batch_no)
            reason = f"Weaviate could not be reached: {self._plain(e).removeprefix('the import stopped: ')}"
            log.error("batch %d: Weaviate could not be reached; its %d items failed: %s", batch_no, len(batch), e,
                      extra=event("store.unavailable", items=len(batch), error=type(e).__name__, reason=reason))
            prepared.outcomes = {item.seq: ("failed", reason, "store_unavailable") for item in batch}
            return prepared
        # Items repeating an earlier item's memory were settled when the job was planned.
        settled = settle(memories, existing)
        for i in settled.unchanged:
            prepared.outcomes[batch[i].seq] = self._already_stored(existing[memories[i].uuid], job_created)
        for i in settled.to_update:
            prepared.to_update.append((batch[i], memories[i], existing[memories[i].uuid].created_at))
        for i in settled.to_write:
            stored = existing.get(memories[i].uuid)
            prepared.to_write.append((batch[i], memories[i]))
            prepared.created_at.append(stored.created_at if stored is not None else kept_created.get(memories[i].uuid))
        if prepared.to_write:
            self._embed(prepared, embedder)
        prepared.embed_seconds = time.time() - started
        return prepared

    @staticmethod
    def _already_stored(stored: StoredMemory, job_created: float) -> tuple[str, str, str]:
        # Stored by this job before it was stopped: it counts as written, as it would have
        # in an uninterrupted run. Stored earlier: unchanged.
        created = stored.created_at.timestamp() if stored.created_at is not None else 0.0
        if created >= job_created:
            return ("written", "", "")
        return ("unchanged", "", "")

    def _embed(self, prepared: _PreparedBatch, embedder: "_JobEmbedder") -> None:
        texts = [m.content for _, m in prepared.to_write]
        try:
            result = embedder.embed(texts)
        except (EmbeddingProviderError, InputTooLongError, ValueError) as e:
            if getattr(e, "retryable", False) or len(texts) == 1:
                log.error("batch %d: the embedder failed for its %d texts: %s", prepared.batch_no, len(texts), e,
                          extra=event("embed.failed", items=len(texts), error=type(e).__name__,
                                      kind=getattr(e, "kind", ""), reason=self._reason(e)))
                self._fail_all(prepared, e)
                return
            log.warning("batch %d: the embedder refused the batch (%s); embedding its texts one by one", prepared.batch_no, e,
                        extra=event("embed.split", items=len(texts), error=type(e).__name__))
            # A permanent error in a batch: find the item(s) at fault, embed the rest.
            self._embed_one_by_one(prepared, embedder)
            return
        prepared.vectors = result.vectors
        prepared.cache_hits = result.cache_hits
        prepared.cache_misses = len(texts) - result.cache_hits
        prepared.retries = result.retries

    def _embed_one_by_one(self, prepared: _PreparedBatch, embedder: "_JobEmbedder") -> None:
        keep: list[tuple[PendingItem, Memory]] = []
        created: list[Any] = []
        vectors = []
        for (item, memory), when in zip(prepared.to_write, prepared.created_at):
            try:
                result = embedder.embed([memory.content])
            except (EmbeddingProviderError, InputTooLongError, ValueError) as e:
                prepared.outcomes[item.seq] = ("failed", self._reason(e), getattr(e, "kind", "bad_input"))
                continue
            keep.append((item, memory))
            created.append(when)
            vectors.append(result.vectors[0])
            prepared.cache_hits += result.cache_hits
            prepared.cache_misses += 1 - result.cache_hits
            prepared.retries += result.retries
        prepared.to_write, prepared.created_at = keep, created
        prepared.vectors = vectors

    def _fail_all(self, prepared: _PreparedBatch, e: BaseException) -> None:
        for item, _ in prepared.to_write:
            prepared.outcomes[item.seq] = ("failed", self._reason(e), getattr(e, "kind", "bad_input"))
        prepared.to_write, prepared.created_at, prepared.vectors = [], [], None

    def _reason(self, e: BaseException) -> str:
        if isinstance(e, InputTooLongError):
            return f"has {e.tokens} tokens, more than the model's limit of {e.limit}; split it into smaller chunks"
        return self._plain(e).removeprefix("the import stopped: ")

    # --- writing -----------------------------------------------------------------------
    def _writer(
        self,
        job_id: str,
        work: "queue.Queue[_PreparedBatch | None]",
        retry: RetryPolicy,
        config: BatchConfig,
        stop_reason: list[str],
        on_progress: ProgressCallback | None,
    ) -> None:
        while True:
            prepared = work.get()
            if prepared is None:
                return
            with job_context(job_id, prepared.batch_no):
                try:
                    self._finish(job_id, prepared, retry, config, stop_reason, on_progress)
                except Exception as e:  # noqa: BLE001 - the batch's items stay pending: a resume redoes them
                    log.error("batch %d stopped the import: %s", prepared.batch_no, e, exc_info=True,
                              extra=event("batch.stopped", error=type(e).__name__))
                    if not stop_reason:
                        stop_reason.append(self._plain(e))

    def _finish(
        self,
        job_id: str,
        prepared: _PreparedBatch,
        retry: RetryPolicy,
        config: BatchConfig,
        stop_reason: list[str],
        on_progress: ProgressCallback | None,
    ) -> None:
        write_started = time.time()
        self._write(prepared, retry)
        self._rewrite(prepared, retry)
        finished = time.time()
        outcomes = prepared.outcomes
        counts = {"written": 0, "updated": 0, "unchanged": 0, "failed": 0}
        error_types = set()
        for state, _, etype in outcomes.values():
            counts[state] += 1
            if etype:
                error_types.add(etype)
        record = BatchRecord(
            job_id=job_id,
            batch_no=prepared.batch_no,
            size=prepared.size,
            embed_seconds=prepared.embed_seconds,
            write_seconds=finished - write_started,
            seconds=finished - prepared.started_at,
            cache_hits=prepared.cache_hits,
            cache_misses=prepared.cache_misses,
            written=counts["written"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            failed=counts["failed"],
            retries=prepared.retries,
            started_at=prepared.started_at,
            finished_at=finished,
            error_type=",".join(sorted(error_types)),
        )
        self.jobs.record_batch(record, [(seq, s, r, t) for seq, (s, r, t) in sorted(outcomes.items())])
        if counts["failed"] and not config.continue_on_error and not stop_reason:
            first = next(r for s, r, _ in outcomes.values() if s == "failed")
            stop_reason.append(f"batch {prepared.batch_no} had failures and continue_on_error is off: {first}")
        # After the stop decision, so a job that must stop is told at once.
        log.info("batch %d done in %.2f s: %d written, %d unchanged, %d failed; %d cache hits, %d retries",
                 prepared.batch_no, record.seconds, record.written, record.unchanged, record.failed, record.cache_hits,
                 record.retries,
                 extra=event("batch.done", size=record.size, written=record.written, unchanged=record.unchanged,
                             failed=record.failed, cache_hits=record.cache_hits, cache_misses=record.cache_misses,
                             retries=record.retries, embed_seconds=round(record.embed_seconds, 3),
                             write_seconds=round(record.write_seconds, 3), seconds=round(record.seconds, 3)))
        if config.log_errors:
            for seq, (state, reason, etype) in sorted(outcomes.items()):
                if state == "failed":
                    item = prepared.names.get(seq, f"item {seq}")
                    log.warning("%s: %s", item, reason, extra=event("item.failed", item=item, seq=seq, reason=reason,
                                                                       error_type=etype))
        if prepared.batch_no % config.gc_frequency == 0:
            # The seed's gc_frequency: free what finished batches left behind. They are young
            # objects; a full collection would also walk every object of the Weaviate and
            # OpenAI clients each time (a quarter second, 7% of a warm import's time).
            gc.collect(1)
        if on_progress:
            on_progress(self.jobs.require(job_id))

    def _rewrite(self, prepared: _PreparedBatch, retry: RetryPolicy) -> None:
        """Rewrite the metadata of stored memories (no embedding); whole-request failures
        are retried, an object refused is failed with Weaviate's reason."""
        if not prepared.to_update:
            return
        memories = [m for _, m, _ in prepared.to_update]
        created = [c for _, _, c in prepared.to_update]
        try:
            outcome = retry.run(lambda: self.system.store.rewrite(memories, created),
                                is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
                                what=f"a Weaviate update of {len(memories)} memories")
        except (WeaviateBaseError, OSError) as e:
            self._raise_if_server_stopped(prepared.batch_no)
            reason = f"Weaviate did not take the update: {self._plain(e).removeprefix('the import stopped: ')}"
            for item, _, _ in prepared.to_update:
                prepared.outcomes[item.seq] = ("failed", reason, "store_unavailable")
            return
        for j, (item, _, _) in enumerate(prepared.to_update):
            if j in outcome.failed:
                prepared.outcomes[item.seq] = ("failed", f"Weaviate refused the update: {outcome.failed[j]}", "store_rejected")
            else:
                prepared.outcomes[item.seq] = ("updated", "", "")

    def _raise_if_server_stopped(self, batch_no: int) -> None:
        """A stopped memsys server is not an outage to wait out: the job stops here, with
        the batch's items left pending, and a resume (which starts the server) finishes it."""
        why = self.system.store.server_stopped()
        if why:
            raise ServerStoppedError(f"batch {batch_no} could not be written: {why}; resume the import to finish it")

    def _write(self, prepared: _PreparedBatch, retry: RetryPolicy) -> None:
        """Write the batch; retry whole-request failures with backoff, and per-object
        failures that may pass on a second try, with the same UUIDs."""
        todo = list(range(len(prepared.to_write)))
        attempt = 0
        while todo:
            memories = [prepared.to_write[i][1] for i in todo]
            vectors = [prepared.vectors[i] for i in todo]
            created = [prepared.created_at[i] for i in todo]
            try:
                outcome = self.system.store.write(memories, vectors, created_at=created)
            except (WeaviateBaseError, OSError) as e:
                self._raise_if_server_stopped(prepared.batch_no)
                if attempt >= retry.max_retries:
                    reason = f"Weaviate did not take the write: {self._plain(e).removeprefix('the import stopped: ')}"
                    log.error("batch %d: Weaviate did not take the write of %d items: %s", prepared.batch_no, len(todo), e,
                              extra=event("store.unavailable", items=len(todo), error=type(e).__name__, reason=reason))
                    for i in todo:
                        prepared.outcomes[prepared.to_write[i][0].seq] = ("failed", reason, "store_unavailable")
                    return
                wait = retry.delay(attempt)
                log_retry(f"a Weaviate write of {len(todo)} items", e, attempt + 1, retry.max_retries, wait)
                time.sleep(wait)
                attempt += 1
                continue
            if outcome.failed:
                # A server shutting down refuses objects one by one ("resolve node name"):
                # not the objects' fault, so they stay pending for the resume.
                self._raise_if_server_stopped(prepared.batch_no)
            again = []
            for j, i in enumerate(todo):
                seq = prepared.to_write[i][0].seq
                if j not in outcome.failed:
                    prepared.outcomes[seq] = ("written", "", "")
                elif attempt < retry.max_retries and not _is_permanent_write_error(outcome.failed[j]):
                    again.append(i)
                elif is_replica_error(outcome.failed[j]):
                    # Not the object's fault: too few replicas up. "Retry failed" once they are back.
                    prepared.outcomes[seq] = ("failed", f"Weaviate could not store it: {outcome.failed[j]}", "replicas_down")
                else:
                    prepared.outcomes[seq] = ("failed", f"Weaviate refused it: {outcome.failed[j]}", "store_rejected")
            if again:
                wait = retry.delay(attempt)
                first = outcome.failed[todo.index(again[0])]
                log_retry(f"{len(again)} objects Weaviate refused", RuntimeError(first), attempt + 1, retry.max_retries, wait)
                time.sleep(wait)
                prepared.retries += 1
            todo = again
            attempt += 1


@dataclass(frozen=True)
class _JobEmbedder:
    """How one job embeds: its cache folder (`cache_dir`), whether it reads and fills the
    cache at all (`enable_cache`), and its retry policy."""

    router: EmbeddingRouter
    use_cache: bool
    retry: RetryPolicy

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return self.router.embed(texts, use_cache=self.use_cache, retry=self.retry)


def plan_sizes(texts: Sequence[str], config: BatchConfig, max_inputs: int) -> list[int]:
    """The batch sizes an import of `texts` would use (for previews)."""
    items = (PendingItem(i, "", {"content": t}, "") for i, t in enumerate(texts))
    return [len(b) for b in plan_batches(items, config, lambda: config.max_batch_size, max_inputs)]
