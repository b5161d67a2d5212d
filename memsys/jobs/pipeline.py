"""The pipeline every job runs, whatever its kind (memsys/jobs/kinds.py: an import of
files, a re-embed): plan the job's items into the job database, then process them in
batches sized by text length (memsys/jobs/batching.py), embedding the next batch while
writer threads store the current one, with retries, per-item outcomes and per-batch
records. Everything a batch did is recorded in one transaction, so a stop at any point
loses nothing and a resume finishes with the same result.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from weaviate.exceptions import WeaviateBaseError

from memsys.api import MemorySystem, check_embedder
from memsys.config import BatchConfig
from memsys.embeddings.router import EmbeddingResult, EmbeddingRouter
from memsys.errors import EmbeddingProviderError, InputTooLongError, ServerStoppedError, scrub
from memsys.jobs.batching import AdaptiveBatchSizer, plan_batches
from memsys.jobs.database import JobStore
from memsys.jobs.imports import FileImport
from memsys.jobs.kinds import JobContext, JobKind, ProgressCallback
from memsys.jobs.metrics import BatchRecord
from memsys.jobs.records import UPDATED, WRITTEN, ItemOutcome, JobProgress, PendingItem
from memsys.jobs.reembed import Reembed
from memsys.jobs.request import ImportRequest, embedder_name
from memsys.logs import event, get_logger, job_context
from memsys.models import Memory
from memsys.retry import RetryPolicy, log_retry
from memsys.store import MemoryStore, StoredMemory, is_replica_error, settle

log = get_logger("pipeline")
_START_RETRY = RetryPolicy(5, 0.5, 4.0)  # about 10 s of retries for the reads that open a job
# Pending items read from the job database (and looked up in Weaviate) per query.
_FETCH_WINDOW = 1000


def job_kind(system: MemorySystem, request: ImportRequest) -> JobKind:
    """The kind of job a request asks for."""
    if request.reembed_into:
        return Reembed(system, request)
    return FileImport(system)


class StopSignal:
    """Why a job must stop before its last batch, set once by whichever thread finds out
    first (a batch being prepared, a writer); read by every other thread. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = threading.Event()
        self._reason = ""

    def stop(self, reason: str) -> None:
        """Ask the job to stop; the first reason given is the one kept."""
        with self._lock:
            if not self._set.is_set():
                self._reason = reason
                self._set.set()

    def is_set(self) -> bool:
        return self._set.is_set()

    @property
    def reason(self) -> str:
        """Why the job stopped early, or "" while it has not."""
        with self._lock:
            return self._reason


@dataclass(frozen=True)
class _JobEmbedder:
    """How one job embeds: through the router with the job's cache folder, whether it
    reads and fills the cache at all (`use_cache`), and its retry policy."""

    router: EmbeddingRouter
    use_cache: bool
    retry: RetryPolicy

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return self.router.embed(texts, use_cache=self.use_cache, retry=self.retry)


@dataclass(slots=True)
class _Run:
    """What every batch of one run of a job shares."""

    job: JobContext
    kind: JobKind
    config: BatchConfig
    retry: RetryPolicy
    embedder: _JobEmbedder
    job_created: float
    hashes: dict[str, str]  # document id -> its content hash, as planning found it
    # uuid -> what Weaviate holds for it (None: nothing), asked a window at a time ahead of
    # the batches; an item missing here is asked for by its batch.
    known: dict[str, StoredMemory | None] = field(default_factory=dict)
    stop: StopSignal = field(default_factory=StopSignal)

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def store(self) -> MemoryStore:
        return self.job.system.store


@dataclass(slots=True)
class _PreparedBatch:
    """One batch looked up and embedded, on its way to a writer: what to write, what to
    rewrite, and the outcome of each item settled so far."""

    batch_no: int
    started_at: float
    size: int
    to_write: list[tuple[PendingItem, Memory]] = field(default_factory=list)
    # Same content, new metadata: rewritten with their stored vectors (created_at kept).
    to_update: list[tuple[PendingItem, Memory, Any]] = field(default_factory=list)
    vectors: Any = None
    created_at: list[Any] = field(default_factory=list)  # of what is written
    outcomes: dict[int, ItemOutcome] = field(default_factory=dict)  # by item seq
    names: dict[int, str] = field(default_factory=dict)  # seq -> the item's name, for the log
    embed_seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0

    def fail(self, seqs: Sequence[int], reason: str, error_type: str) -> None:
        for seq in seqs:
            self.outcomes[seq] = ItemOutcome.failed(reason, error_type)

    def first_failure(self) -> str | None:
        """The reason of the batch's first failed item; None when none failed."""
        return next((o.reason for o in self.outcomes.values() if o.state == "failed"), None)


def _is_permanent_write_error(message: str) -> bool:
    m = message.lower()
    return any(word in m for word in ("vector length", "dimension", "invalid", "validation", "no such prop", "wrong data type"))


class ImportPipeline:
    """Runs jobs of every kind: plan, then embed and write in overlapped batches."""

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
            kind = job_kind(self.system, request)
            job = JobContext(job_id, request, jobs, kind.system, on_progress)
            refused = self._other_embedder(request)
            if refused:
                jobs.set_state(job_id, "failed", refused)
            else:
                self._run_kind(job, kind)
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

    def _other_embedder(self, request: ImportRequest) -> str:
        """Why the job must not run with the embedder set now ("" when it may): a resume
        with other embedding settings would mix two models' vectors in one collection."""
        provider = self.system.router.provider
        # A job may carry the provider's legacy fingerprint (one naming an endpoint): the same embedder.
        same_embedder = {provider.fingerprint, *(provider.legacy_fingerprint(u) for u in provider.base_urls)}
        if not request.embedder or request.embedder in same_embedder:
            return ""
        return (f"this import was started with the embedder {request.embedder_name}; it is set to "
                f"{embedder_name(provider)} now. Resume it with the same embedding settings, so one "
                "collection never mixes two models' vectors")

    def _run_kind(self, job: JobContext, kind: JobKind) -> None:
        """Plan (unless planned), process, complete; the job's state is set on the way."""
        jobs, job_id, system = self.jobs, job.job_id, job.system
        # A schema read at the start: a cluster answers 500 for a few seconds after a node
        # dies, so it is retried for about ten seconds whatever the job's own retry count.
        _START_RETRY.run(
            lambda: check_embedder(system),
            is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
            what="the collection's embedder check",
        )
        if not jobs.require(job_id).planned:
            kind.plan(job)
        else:
            jobs.finish_planning(job_id)
        if jobs.cancel_requested(job_id):
            jobs.set_state(job_id, "cancelled")
            return
        # Several endpoints must serve one model: refused here, before a vector is written.
        system.router.provider.verify()
        system.store.client  # (re)starts this data directory's server if it is down
        with system.store.import_running():
            stopped_early = self._process(job, kind)
        if jobs.cancel_requested(job_id):
            jobs.set_state(job_id, "cancelled")
        elif stopped_early:
            jobs.set_state(job_id, "failed", stopped_early)
        else:
            self.last_index_wait = kind.complete(job)
            jobs.set_state(job_id, "completed")

    def _plain(self, e: BaseException) -> str:
        message = scrub(str(e), self.system.settings.secrets)
        return f"the import stopped: {message}" if message else f"the import stopped: {type(e).__name__}"

    # --- processing --------------------------------------------------------------------
    def _process(self, job: JobContext, kind: JobKind) -> str:
        """Process every pending item; returns "" or why the job stopped early."""
        jobs, job_id, system = self.jobs, job.job_id, job.system
        config = job.request.config
        retry = RetryPolicy(config.max_retries, config.base_retry_delay, config.max_retry_delay)
        run = _Run(
            job, kind, config, retry,
            embedder=_JobEmbedder(
                system.router.with_cache_dir(config.resolve_cache_dir(system.settings.data_dir)),
                use_cache=config.enable_cache,
                retry=retry,
            ),
            job_created=jobs.require(job_id).created_at,
            hashes={d.document_id: d.document_hash for d in jobs.documents(job_id)},
        )
        provider = system.router.provider
        budget = getattr(provider, "budget", None)
        if budget is not None:
            settings = system.settings
            budget.configure(config.requests_per_minute or settings.embedding_requests_per_minute,
                             config.tokens_per_minute or settings.embedding_tokens_per_minute)
        work: queue.Queue[_PreparedBatch | None] = queue.Queue(maxsize=config.queue_depth)
        writers = [threading.Thread(target=self._writer, args=(run, work), daemon=True, name=f"memsys-writer-{i}")
                   for i in range(config.write_workers)]
        for w in writers:
            w.start()
        try:
            self._prepare_all(run, work)
        finally:
            for _ in writers:
                work.put(None)
            for w in writers:
                w.join()
        return run.stop.reason

    def _prepare_all(self, run: _Run, work: "queue.Queue[_PreparedBatch | None]") -> None:
        """Cut the pending items into batches and prepare them, `parallel` at once: while
        one waits for the embedder, another checks what Weaviate already has. Prepared
        batches go to the writers."""
        config, provider = run.config, run.job.system.router.provider
        # Enough batches in flight to fill every endpoint's slots (a remote provider's round
        # trip is hidden by concurrency; the budget, not this number, keeps it under its limit).
        parallel = max(config.embed_workers, provider.parallelism)
        batch_no = self.jobs.next_batch_no(run.job_id)
        in_flight: set[Future[None]] = set()

        def prepare(number: int, batch: list[PendingItem]) -> None:
            with job_context(run.job_id, number):
                prepared = self._prepare(run, number, batch)
            if not config.continue_on_error and not run.stop.is_set():
                # Known now, not only once the writer has recorded the batch: no new batch starts.
                failure = prepared.first_failure()
                if failure is not None:
                    run.stop.stop(f"batch {number} had failures and continue_on_error is off: {failure}")
            work.put(prepared)

        sizer = AdaptiveBatchSizer(config)
        with ThreadPoolExecutor(parallel, thread_name_prefix="memsys-embed") as pool:
            for batch in plan_batches(self._pending(run), config, sizer.observe, provider.max_inputs_per_request):
                if run.stop.is_set() or self.jobs.cancel_requested(run.job_id):
                    break
                while len(in_flight) >= parallel:
                    # Whichever batch is done first frees its slot: one slow answer does not
                    # hold the other endpoints idle behind it.
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        in_flight.discard(future)
                        future.result()
                self.jobs.heartbeat(run.job_id, batch_no)
                in_flight.add(pool.submit(prepare, batch_no, batch))
                batch_no += 1
            for future in in_flight:
                future.result()

    def _pending(self, run: _Run) -> Iterator[PendingItem]:
        """Pending items in order, a window at a time. What Weaviate already holds for a
        window is asked in one query and left in `run.known` for the batches; if that
        query fails, each batch asks again for itself, with retries."""
        after = -1
        while True:
            window = self.jobs.pending_items(run.job_id, after_seq=after, limit=_FETCH_WINDOW)
            if not window:
                return
            uuids = [item.uuid for item in window]
            try:
                stored = run.store.existing(uuids)
            except (WeaviateBaseError, OSError) as e:
                log.warning("Weaviate did not answer which of %d items it holds (each batch asks again): %s", len(uuids), e,
                            extra=event("store.lookup.failed", items=len(uuids), error=type(e).__name__, reason=str(e)))
                stored = None
            if stored is not None:
                run.known.update((u, stored.get(u)) for u in uuids)
            yield from window
            after = window[-1].seq


    def _prepare(self, run: _Run, batch_no: int, batch: list[PendingItem]) -> _PreparedBatch:
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
            memories.append(dataclasses.replace(m, document_hash=run.hashes[m.document_id]) if m.document_id in run.hashes else m)
        prepared = _PreparedBatch(batch_no, started, len(batch), names={item.seq: item.item for item in batch})
        existing: dict[str, StoredMemory] = {}
        unknown = []
        for m in memories:
            if m.uuid in run.known:
                stored = run.known.pop(m.uuid)
                if stored is not None:
                    existing[m.uuid] = stored
            else:
                unknown.append(m.uuid)
        try:
            if unknown:
                existing.update(run.retry.run(
                    lambda: run.store.existing(unknown),
                    is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
                    what=f"a Weaviate lookup of {len(unknown)} items",
                ))
        except (WeaviateBaseError, OSError) as e:  # every item gets this reason; retry-failed clears it
            _raise_if_server_stopped(run.store, batch_no)
            reason = f"Weaviate could not be reached: {self._plain(e).removeprefix('the import stopped: ')}"
            log.error("batch %d: Weaviate could not be reached; its %d items failed: %s", batch_no, len(batch), e,
                      extra=event("store.unavailable", items=len(batch), error=type(e).__name__, reason=reason))
            prepared.fail([item.seq for item in batch], reason, "store_unavailable")
            return prepared
        # Items repeating an earlier item's memory were settled when the job was planned.
        settled = settle(memories, existing)
        for i in settled.unchanged:
            prepared.outcomes[batch[i].seq] = run.kind.stored_outcome(existing[memories[i].uuid], run.job_created)
        for i in settled.to_update:
            prepared.to_update.append((batch[i], memories[i], existing[memories[i].uuid].created_at))
        for i in settled.to_write:
            stored = existing.get(memories[i].uuid)
            prepared.to_write.append((batch[i], memories[i]))
            prepared.created_at.append(stored.created_at if stored is not None else kept_created.get(memories[i].uuid))
        if prepared.to_write:
            self._embed(prepared, run.embedder)
        prepared.embed_seconds = time.time() - started
        return prepared

    def _embed(self, prepared: _PreparedBatch, embedder: _JobEmbedder) -> None:
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

    def _embed_one_by_one(self, prepared: _PreparedBatch, embedder: _JobEmbedder) -> None:
        keep: list[tuple[PendingItem, Memory]] = []
        created: list[Any] = []
        vectors = []
        for (item, memory), when in zip(prepared.to_write, prepared.created_at):
            try:
                result = embedder.embed([memory.content])
            except (EmbeddingProviderError, InputTooLongError, ValueError) as e:
                prepared.fail([item.seq], self._reason(e), getattr(e, "kind", "bad_input"))
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
        prepared.fail([item.seq for item, _ in prepared.to_write], self._reason(e), getattr(e, "kind", "bad_input"))
        prepared.to_write, prepared.created_at, prepared.vectors = [], [], None

    def _reason(self, e: BaseException) -> str:
        if isinstance(e, InputTooLongError):
            return f"has {e.tokens} tokens, more than the model's limit of {e.limit}; split it into smaller chunks"
        return self._plain(e).removeprefix("the import stopped: ")


    # --- writing -----------------------------------------------------------------------
    def _writer(self, run: _Run, work: "queue.Queue[_PreparedBatch | None]") -> None:
        while True:
            prepared = work.get()
            if prepared is None:
                return
            with job_context(run.job_id, prepared.batch_no):
                try:
                    self._finish(run, prepared)
                except Exception as e:  # noqa: BLE001 - the batch's items stay pending: a resume redoes them
                    log.error("batch %d stopped the import: %s", prepared.batch_no, e, exc_info=True,
                              extra=event("batch.stopped", error=type(e).__name__))
                    run.stop.stop(self._plain(e))


    def _finish(self, run: _Run, prepared: _PreparedBatch) -> None:
        config = run.config
        write_started = time.time()
        self._write(run, prepared)
        self._rewrite(run, prepared)
        finished = time.time()
        outcomes = prepared.outcomes
        counts = {"written": 0, "updated": 0, "unchanged": 0, "failed": 0}
        error_types = set()
        for outcome in outcomes.values():
            counts[outcome.state] += 1
            if outcome.error_type:
                error_types.add(outcome.error_type)
        record = BatchRecord(
            job_id=run.job_id,
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
        self.jobs.record_batch(record, outcomes)
        failure = prepared.first_failure()
        if failure is not None and not config.continue_on_error:
            run.stop.stop(f"batch {prepared.batch_no} had failures and continue_on_error is off: {failure}")
        # After the stop decision, so a job that must stop is told at once.
        log.info("batch %d done in %.2f s: %d written, %d unchanged, %d failed; %d cache hits, %d retries",
                 prepared.batch_no, record.seconds, record.written, record.unchanged, record.failed, record.cache_hits,
                 record.retries,
                 extra=event("batch.done", size=record.size, written=record.written, unchanged=record.unchanged,
                             failed=record.failed, cache_hits=record.cache_hits, cache_misses=record.cache_misses,
                             retries=record.retries, embed_seconds=round(record.embed_seconds, 3),
                             write_seconds=round(record.write_seconds, 3), seconds=round(record.seconds, 3)))
        if config.log_errors:
            for seq, outcome in sorted(outcomes.items()):
                if outcome.state == "failed":
                    item = prepared.names.get(seq, f"item {seq}")
                    log.warning("%s: %s", item, outcome.reason, extra=event(
                        "item.failed", item=item, seq=seq, reason=outcome.reason, error_type=outcome.error_type))
        if prepared.batch_no % config.gc_frequency == 0:
            # Every `gc_frequency` batches, free what finished batches left behind. They are
            # young objects; a full collection would also walk every object of the Weaviate
            # and OpenAI clients each time (a quarter second, 7% of a warm import's time).
            gc.collect(1)
        run.job.report_progress()

    def _rewrite(self, run: _Run, prepared: _PreparedBatch) -> None:
        """Rewrite the metadata of stored memories (no embedding); whole-request failures
        are retried, an object refused is failed with Weaviate's reason."""
        if not prepared.to_update:
            return
        memories = [m for _, m, _ in prepared.to_update]
        created = [c for _, _, c in prepared.to_update]
        try:
            outcome = run.retry.run(lambda: run.store.rewrite(memories, created),
                                is_retryable=lambda e: isinstance(e, (WeaviateBaseError, OSError)),
                                what=f"a Weaviate update of {len(memories)} memories")
        except (WeaviateBaseError, OSError) as e:
            _raise_if_server_stopped(run.store, prepared.batch_no)
            reason = f"Weaviate did not take the update: {self._plain(e).removeprefix('the import stopped: ')}"
            prepared.fail([item.seq for item, _, _ in prepared.to_update], reason, "store_unavailable")
            return
        for j, (item, _, _) in enumerate(prepared.to_update):
            if j in outcome.failed:
                prepared.fail([item.seq], f"Weaviate refused the update: {outcome.failed[j]}", "store_rejected")
            else:
                prepared.outcomes[item.seq] = UPDATED

    def _write(self, run: _Run, prepared: _PreparedBatch) -> None:
        """Write the batch; retry whole-request failures with backoff, and per-object
        failures that may pass on a second try, with the same UUIDs."""
        retry = run.retry
        todo = list(range(len(prepared.to_write)))
        attempt = 0
        while todo:
            memories = [prepared.to_write[i][1] for i in todo]
            vectors = [prepared.vectors[i] for i in todo]
            created = [prepared.created_at[i] for i in todo]
            try:
                outcome = run.store.write(memories, vectors, created_at=created)
            except (WeaviateBaseError, OSError) as e:
                _raise_if_server_stopped(run.store, prepared.batch_no)
                if attempt >= retry.max_retries:
                    reason = f"Weaviate did not take the write: {self._plain(e).removeprefix('the import stopped: ')}"
                    log.error("batch %d: Weaviate did not take the write of %d items: %s", prepared.batch_no, len(todo), e,
                              extra=event("store.unavailable", items=len(todo), error=type(e).__name__, reason=reason))
                    prepared.fail([prepared.to_write[i][0].seq for i in todo], reason, "store_unavailable")
                    return
                wait = retry.delay(attempt)
                log_retry(f"a Weaviate write of {len(todo)} items", e, attempt + 1, retry.max_retries, wait)
                time.sleep(wait)
                attempt += 1
                continue
            if outcome.failed:
                # A server shutting down refuses objects one by one ("resolve node name"):
                # not the objects' fault, so they stay pending for the resume.
                _raise_if_server_stopped(run.store, prepared.batch_no)
            again = []
            for j, i in enumerate(todo):
                seq = prepared.to_write[i][0].seq
                if j not in outcome.failed:
                    prepared.outcomes[seq] = WRITTEN
                elif attempt < retry.max_retries and not _is_permanent_write_error(outcome.failed[j]):
                    again.append(i)
                elif is_replica_error(outcome.failed[j]):
                    # Not the object's fault: too few replicas up. "Retry failed" once they are back.
                    prepared.fail([seq], f"Weaviate could not store it: {outcome.failed[j]}", "replicas_down")
                else:
                    prepared.fail([seq], f"Weaviate refused it: {outcome.failed[j]}", "store_rejected")
            if again:
                wait = retry.delay(attempt)
                first = outcome.failed[todo.index(again[0])]
                log_retry(f"{len(again)} objects Weaviate refused", RuntimeError(first), attempt + 1, retry.max_retries, wait)
                time.sleep(wait)
                prepared.retries += 1
            todo = again
            attempt += 1


def _raise_if_server_stopped(store: MemoryStore, batch_no: int) -> None:
    """A stopped memsys server is not an outage to wait out: the job stops here, with
    the batch's items left pending, and a resume (which starts the server) finishes it."""
    why = store.server_stopped()
    if why:
        raise ServerStoppedError(f"batch {batch_no} could not be written: {why}; resume the import to finish it")
