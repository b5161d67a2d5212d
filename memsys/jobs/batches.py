"""One batch of a job, from its pending items to its record in the job database: what
Weaviate already holds of it, the embedding of what is new (one by one when the batch as
a whole is refused, to find the items at fault), the write with retries, the rewrite of
what only changed its metadata, and each item's outcome. `JobRun` is what every batch of
one run shares, `StopSignal` how any of its threads stops the job.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence


from memsys.config import BatchConfig
from memsys.embeddings.router import EmbeddingResult, EmbeddingRouter
from memsys.errors import EmbeddingProviderError, InputTooLongError, ServerStoppedError, scrub, weaviate_errors
from memsys.jobs.job_stages import EMBEDDED, EMBEDDING, WRITING
from memsys.jobs.kinds import JobContext, JobKind
from memsys.jobs.metrics import BatchRecord
from memsys.jobs.records import UPDATED, WRITTEN, ItemOutcome, PendingItem
from memsys.logs import event, get_logger
from memsys.models import Memory
from memsys.retry import RetryPolicy, log_retry
from memsys.store import SETTLE_PROPERTIES, MemoryStore, StoredMemory, is_replica_error, settle
from memsys.waits import add_wait, waited

log = get_logger("pipeline")
STOPPED = "the import stopped: "
CANCELLED = "cancelled"
# Cancel is read from the job database at most this often by the threads of a run.
_CANCEL_POLL_SECONDS = 0.2
# A batch is embedded in sub-calls of about this many seconds each: the progress moves,
# and a cancel is honoured, between two of them.
_SUB_CALL_SECONDS = 2.0
# Texts in a sub-call at least (fewer only when fewer are left), and in a run's first ones,
# before its speed is known: the local embedder does two 1-2 KB texts in about three
# seconds on two cores, and one text at a time costs it more than half its speed.
_MIN_SUB_CALL = 2


def stopped_because(e: BaseException, secrets: Sequence[str]) -> str:
    """Why a job stopped, in the words its record shows: the error's message, scrubbed of
    secrets (its type when it has none)."""
    message = scrub(str(e), secrets)
    return f"{STOPPED}{message}" if message else f"{STOPPED}{type(e).__name__}"


class StopSignal:
    """Why a job must stop before its last batch, set once by whichever thread finds out
    first (a batch being prepared, a writer); read by every other thread. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = threading.Event()
        self._reason = ""
        self._cancelled = False

    def cancel(self) -> None:
        """The user cancelled: besides stopping, what is not written yet is not written."""
        with self._lock:
            self._cancelled = True
        self.stop(CANCELLED)

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

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


@dataclass(frozen=True, slots=True)
class JobEmbedder:
    """How one job embeds: through the router with the job's cache folder, whether it
    reads and fills the cache at all (`use_cache`), and its retry policy."""

    router: EmbeddingRouter
    use_cache: bool
    retry: RetryPolicy

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return self.router.embed(texts, use_cache=self.use_cache, retry=self.retry)


@dataclass(slots=True)
class JobRun:
    """What every batch of one run of a job shares."""

    job: JobContext
    kind: JobKind
    config: BatchConfig
    retry: RetryPolicy
    embedder: JobEmbedder
    job_created: float
    hashes: dict[str, str]  # document id -> its content hash, as planning found it
    # uuid -> what Weaviate holds for it (None: nothing), asked a window at a time ahead of
    # the batches; an item missing here is asked for by its batch.
    known: dict[str, StoredMemory | None] = field(default_factory=dict)
    stop: StopSignal = field(default_factory=StopSignal)
    # Seconds one text took to embed in the last sub-call (None until the first one).
    seconds_per_text: float | None = None
    _cancel_checked: float = 0.0

    def cancelled(self, fresh: bool = False) -> bool:
        """True once the user cancelled the job (asked in the job database, from any
        process, at most every `_CANCEL_POLL_SECONDS` unless `fresh`); the stop signal is
        set then."""
        if self.stop.cancelled:
            return True
        now = time.monotonic()
        if not fresh and now - self._cancel_checked < _CANCEL_POLL_SECONDS:
            return False
        self._cancel_checked = now
        if self.job.jobs.cancel_requested(self.job.job_id):
            self.stop.cancel()
            return True
        return False

    def sub_call_size(self, left: int) -> int:
        """How many of `left` texts the next embedding sub-call takes: for the local
        embedder (in this process, 25 texts of 1-2 KB take it half a minute), about
        `_SUB_CALL_SECONDS` of work at the speed measured so far."""
        if self.job.system.router.provider.name != "local":
            # A provider behind HTTP: one request per batch, as its budget counts requests
            # and the batches in parallel hide its round trip; a cancel acts between batches
            # and before a write.
            return left
        if self.seconds_per_text is None:
            return min(left, _MIN_SUB_CALL)
        return max(min(left, _MIN_SUB_CALL), min(left, int(_SUB_CALL_SECONDS / max(self.seconds_per_text, 1e-6))))

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def store(self) -> MemoryStore:
        return self.job.system.store


@dataclass(slots=True)
class PreparedBatch:
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
    # Stage times within embed_seconds / the write (BatchRecord says what each holds).
    lookup_seconds: float = 0.0
    embedder_seconds: float = 0.0
    provider_wait_seconds: float = 0.0
    store_wait_seconds: float = 0.0
    tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    cancelled: bool = False  # cancel came before its write: nothing of it is written or recorded
    staged: bool = False  # some of its items were given a stage (item_stages) to clear once recorded

    def fail(self, seqs: Sequence[int], reason: str, error_type: str) -> None:
        for seq in seqs:
            self.outcomes[seq] = ItemOutcome.failed(reason, error_type)

    def record(self, job_id: str, write_started: float, finished: float) -> BatchRecord:
        """The batch's figures as the job database keeps them."""
        counts = {"written": 0, "updated": 0, "unchanged": 0, "failed": 0}
        error_types = set()
        for outcome in self.outcomes.values():
            counts[outcome.state] += 1
            if outcome.error_type:
                error_types.add(outcome.error_type)
        return BatchRecord(
            job_id=job_id,
            batch_no=self.batch_no,
            size=self.size,
            embed_seconds=self.embed_seconds,
            write_seconds=finished - write_started,
            seconds=finished - self.started_at,
            cache_hits=self.cache_hits,
            cache_misses=self.cache_misses,
            written=counts["written"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            failed=counts["failed"],
            retries=self.retries,
            started_at=self.started_at,
            finished_at=finished,
            error_type=",".join(sorted(error_types)),
            lookup_seconds=self.lookup_seconds,
            embedder_seconds=self.embedder_seconds,
            provider_wait_seconds=self.provider_wait_seconds,
            store_wait_seconds=self.store_wait_seconds,
            tokens=self.tokens,
        )

    def first_failure(self) -> str | None:
        """The reason of the batch's first failed item; None when none failed."""
        return next((o.reason for o in self.outcomes.values() if o.state == "failed"), None)


def _is_permanent_write_error(message: str) -> bool:
    m = message.lower()
    return any(word in m for word in ("vector length", "dimension", "invalid", "validation", "no such prop", "wrong data type"))


class BatchWork:
    """Prepares (`prepare`: lookup and embedding) and finishes (`finish`: writing and
    recording) the batches of one run; called from several threads at once."""

    def __init__(self, run: JobRun) -> None:
        self.run = run
        self._secrets = run.job.system.settings.secrets

    def plain(self, e: BaseException) -> str:
        """Why `e` stopped the job (`stopped_because`)."""
        return stopped_because(e, self._secrets)

    def prepare(self, batch_no: int, batch: list[PendingItem]) -> PreparedBatch:
        """Decide what each item needs (nothing, a rewrite of its metadata, or embedding
        and writing) and embed."""
        run = self.run
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
        prepared = PreparedBatch(batch_no, started, len(batch), names={item.seq: item.item for item in batch})
        existing: dict[str, StoredMemory] = {}
        unknown = []
        for m in memories:
            if m.uuid in run.known:
                stored = run.known.pop(m.uuid)
                if stored is not None:
                    existing[m.uuid] = stored
            else:
                unknown.append(m.uuid)
        lookup_started = time.time()
        try:
            if unknown:
                existing.update(run.retry.run(
                    lambda: run.store.existing(unknown, properties=SETTLE_PROPERTIES),
                    is_retryable=lambda e: isinstance(e, weaviate_errors(OSError)),
                    what=f"a Weaviate lookup of {len(unknown)} items",
                ))
        except weaviate_errors(OSError) as e:  # every item gets this reason; retry-failed clears it
            _raise_if_server_stopped(run.store, batch_no)
            reason = f"Weaviate could not be reached: {self.plain(e).removeprefix(STOPPED)}"
            log.error("batch %d: Weaviate could not be reached; its %d items failed: %s", batch_no, len(batch), e,
                      extra=event("store.unavailable", items=len(batch), error=type(e).__name__, reason=reason))
            prepared.fail([item.seq for item in batch], reason, "store_unavailable")
            return prepared
        prepared.lookup_seconds = time.time() - lookup_started
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
            embed_started, waited_before = time.time(), waited()
            run.job.jobs.set_stage(run.job_id, [item.seq for item, _ in prepared.to_write], EMBEDDING)
            prepared.staged = True
            self._embed(prepared, run.embedder)
            prepared.embedder_seconds = time.time() - embed_started
            prepared.provider_wait_seconds = waited() - waited_before
        prepared.embed_seconds = time.time() - started
        return prepared

    def _embed(self, prepared: PreparedBatch, embedder: JobEmbedder) -> None:
        """Embed the batch in sub-calls of a couple of seconds each (`JobRun.sub_call_size`):
        after each, its items are marked embedded, so the progress moves per memory, and
        a cancel is honoured (the batch is then dropped, nothing of it written)."""
        run = self.run
        todo = list(zip(prepared.to_write, prepared.created_at))
        keep: list[tuple[PendingItem, Memory]] = []
        created: list[Any] = []
        vectors: list[Any] = []
        if embedder.use_cache and todo:
            # What the cache holds costs no embedding: read in one call and marked embedded
            # at once; only the texts left are embedded in sub-calls.
            cached = embedder.router.cached_texts([m.content for (_, m), _ in todo])
            if cached:
                hits = [pair for pair in todo if pair[0][1].content in cached]
                todo = [pair for pair in todo if pair[0][1].content not in cached]
                if not self._embed_part(prepared, embedder, hits, keep, created, vectors):
                    todo = hits + todo  # refused after all (the cache changed meanwhile): embed as below
        while todo:
            if run.cancelled():
                self._drop(prepared)
                return
            size = run.sub_call_size(len(todo))
            part, todo = todo[:size], todo[size:]
            texts = [m.content for (_, m), _ in part]
            started = time.monotonic()
            try:
                result = embedder.embed(texts)
            except (EmbeddingProviderError, InputTooLongError, ValueError) as e:
                if getattr(e, "retryable", False):
                    log.error("batch %d: the embedder failed for its %d texts: %s", prepared.batch_no, len(texts) + len(todo),
                              e, extra=event("embed.failed", items=len(texts) + len(todo), error=type(e).__name__,
                                             kind=getattr(e, "kind", ""), reason=self._reason(e)))
                    prepared.fail([item.seq for (item, _), _ in part + todo], self._reason(e), getattr(e, "kind", "bad_input"))
                    break
                if len(texts) == 1:
                    log.error("batch %d: the embedder failed for its text: %s", prepared.batch_no, e,
                              extra=event("embed.failed", items=1, error=type(e).__name__,
                                          kind=getattr(e, "kind", ""), reason=self._reason(e)))
                    prepared.fail([part[0][0][0].seq], self._reason(e), getattr(e, "kind", "bad_input"))
                    continue
                log.warning("batch %d: the embedder refused %d texts (%s); embedding them one by one", prepared.batch_no,
                            len(texts), e, extra=event("embed.split", items=len(texts), error=type(e).__name__))
                # A permanent error: find the item(s) at fault, embed the rest.
                if not self._embed_one_by_one(prepared, embedder, part, keep, created, vectors):
                    return
                continue
            if result.embedded and not result.retries:  # cached texts, and waits to retry, say nothing of the speed
                run.seconds_per_text = (time.monotonic() - started) / result.embedded
            self._embedded(prepared, part, result, keep, created, vectors)
        prepared.to_write, prepared.created_at = keep, created
        prepared.vectors = vectors

    def _embed_part(self, prepared: PreparedBatch, embedder: JobEmbedder, part: list[tuple[tuple[PendingItem, Memory], Any]],
                    keep: list[tuple[PendingItem, Memory]], created: list[Any], vectors: list[Any]) -> bool:
        """Embed `part` in one call (texts the cache holds); False, with nothing kept, when
        the embedder refused it."""
        try:
            result = embedder.embed([m.content for (_, m), _ in part])
        except (EmbeddingProviderError, InputTooLongError, ValueError):
            return False
        self._embedded(prepared, part, result, keep, created, vectors)
        return True

    def _embedded(self, prepared: PreparedBatch, part: list[tuple[tuple[PendingItem, Memory], Any]], result: EmbeddingResult,
                  keep: list[tuple[PendingItem, Memory]], created: list[Any], vectors: list[Any]) -> None:
        """Keep what one call embedded and mark its items embedded (the progress moves)."""
        run = self.run
        keep.extend(pair for pair, _ in part)
        created.extend(when for _, when in part)
        vectors.extend(result.vectors)
        prepared.cache_hits += result.cache_hits
        prepared.cache_misses += len(part) - result.cache_hits
        prepared.retries += result.retries
        prepared.tokens += result.tokens
        run.job.jobs.set_stage(run.job_id, [item.seq for (item, _), _ in part], EMBEDDED)

    def _embed_one_by_one(self, prepared: PreparedBatch, embedder: JobEmbedder, part: list[tuple[tuple[PendingItem, Memory], Any]],
                          keep: list[tuple[PendingItem, Memory]], created: list[Any], vectors: list[Any]) -> bool:
        """Embed `part` text by text, failing the ones refused; False when cancelled."""
        run = self.run
        for (item, memory), when in part:
            if run.cancelled():
                self._drop(prepared)
                return False
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
            prepared.tokens += result.tokens
            run.job.jobs.set_stage(run.job_id, [item.seq], EMBEDDED)
        return True

    def _drop(self, prepared: PreparedBatch) -> None:
        """Cancelled before its write: nothing of the batch is written or recorded; its
        items stay pending ("not started"), for a resume."""
        prepared.cancelled = True
        prepared.to_write, prepared.created_at, prepared.vectors, prepared.to_update = [], [], None, []
        prepared.outcomes.clear()

    def _reason(self, e: BaseException) -> str:
        if isinstance(e, InputTooLongError):
            return f"has {e.tokens} tokens, more than the model's limit of {e.limit}; split it into smaller chunks"
        return self.plain(e).removeprefix(STOPPED)

    def finish(self, prepared: PreparedBatch) -> None:
        """Write and rewrite the batch, then record it and its items' outcomes."""
        run = self.run
        config = run.config
        seqs = list(prepared.names)
        if prepared.cancelled or run.cancelled(fresh=True):
            # Cancelled before the write (asked afresh: a cancel clicked while the batch's
            # last texts were embedded counts): what is written stays written; this batch is not.
            run.job.jobs.clear_stages(run.job_id, seqs)
            log.info("batch %d not written: the import was cancelled", prepared.batch_no,
                     extra=event("batch.cancelled", size=prepared.size))
            run.job.report_progress()
            return
        write_started, waited_before = time.time(), waited()
        run.job.jobs.set_stage(run.job_id, [item.seq for item, _ in prepared.to_write], WRITING)
        self._write(prepared)
        self._rewrite(prepared)
        prepared.store_wait_seconds = waited() - waited_before
        record = prepared.record(run.job_id, write_started, finished=time.time())
        self.record(record, prepared)
        if prepared.staged:  # a batch of stored memories only was never staged: nothing to clear
            run.job.jobs.clear_stages(run.job_id, seqs)
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
            for seq, outcome in sorted(prepared.outcomes.items()):
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

    def record(self, record: BatchRecord, prepared: PreparedBatch) -> None:
        """Record the batch and its items' outcomes in the job database (one transaction);
        a worker's batch checks its lease there (memsys/workers/work.py)."""
        self.run.job.jobs.record_batch(record, prepared.outcomes)

    def _rewrite(self, prepared: PreparedBatch) -> None:
        """Rewrite the metadata of stored memories (no embedding); whole-request failures
        are retried, an object refused is failed with Weaviate's reason."""
        run = self.run
        if not prepared.to_update:
            return
        memories = [m for _, m, _ in prepared.to_update]
        created = [c for _, _, c in prepared.to_update]
        try:
            outcome = run.retry.run(lambda: run.store.rewrite(memories, created),
                                is_retryable=lambda e: isinstance(e, weaviate_errors(OSError)),
                                what=f"a Weaviate update of {len(memories)} memories")
        except weaviate_errors(OSError) as e:
            _raise_if_server_stopped(run.store, prepared.batch_no)
            reason = f"Weaviate did not take the update: {self.plain(e).removeprefix(STOPPED)}"
            prepared.fail([item.seq for item, _, _ in prepared.to_update], reason, "store_unavailable")
            return
        for j, (item, _, _) in enumerate(prepared.to_update):
            if j in outcome.failed:
                prepared.fail([item.seq], f"Weaviate refused the update: {outcome.failed[j]}", "store_rejected")
            else:
                prepared.outcomes[item.seq] = UPDATED

    def _write(self, prepared: PreparedBatch) -> None:
        """Write the batch; retry whole-request failures with backoff, and per-object
        failures that may pass on a second try, with the same UUIDs."""
        run = self.run
        retry = run.retry
        todo = list(range(len(prepared.to_write)))
        attempt = 0
        while todo:
            memories = [prepared.to_write[i][1] for i in todo]
            vectors = [prepared.vectors[i] for i in todo]
            created = [prepared.created_at[i] for i in todo]
            try:
                outcome = run.store.write(memories, vectors, created_at=created)
            except weaviate_errors(OSError) as e:
                _raise_if_server_stopped(run.store, prepared.batch_no)
                if attempt >= retry.max_retries:
                    reason = f"Weaviate did not take the write: {self.plain(e).removeprefix(STOPPED)}"
                    log.error("batch %d: Weaviate did not take the write of %d items: %s", prepared.batch_no, len(todo), e,
                              extra=event("store.unavailable", items=len(todo), error=type(e).__name__, reason=reason))
                    prepared.fail([prepared.to_write[i][0].seq for i in todo], reason, "store_unavailable")
                    return
                wait = retry.delay(attempt)
                log_retry(f"a Weaviate write of {len(todo)} items", e, attempt + 1, retry.max_retries, wait)
                time.sleep(wait)
                add_wait(wait)
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
                add_wait(wait)
                prepared.retries += 1
            todo = again
            attempt += 1


def _raise_if_server_stopped(store: MemoryStore, batch_no: int) -> None:
    """A stopped memsys server is not an outage to wait out: the job stops here, with
    the batch's items left pending, and a resume (which starts the server) finishes it."""
    why = store.server_stopped()
    if why:
        raise ServerStoppedError(f"batch {batch_no} could not be written: {why}; resume the import to finish it")
