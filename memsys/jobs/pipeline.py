"""The pipeline every job runs, whatever its kind (memsys/jobs/kinds.py: an import of
files, a re-embed): plan the job's items into the job database, then process them in
batches sized by text length (memsys/jobs/batching.py), preparing the next batches
(lookup, embedding) while writer threads store the ones before (memsys/jobs/batches.py).
Everything a batch did is recorded in one transaction, so a stop at any point loses
nothing and a resume finishes with the same result.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Iterator

from memsys.api import MemorySystem, check_embedder
from memsys.errors import weaviate_errors
from memsys.jobs.batches import BatchWork, JobEmbedder, JobRun, PreparedBatch, stopped_because
from memsys.jobs.batching import AdaptiveBatchSizer, plan_batches
from memsys.jobs.database import JobStore
from memsys.jobs.imports import FileImport
from memsys.jobs.kinds import JobContext, JobKind, ProgressCallback
from memsys.jobs.records import JobProgress, PendingItem
from memsys.jobs.reembed import Reembed
from memsys.jobs.request import ImportRequest, embedder_name
from memsys.logs import event, get_logger, job_context
from memsys.retry import RetryPolicy
from memsys.store import SETTLE_PROPERTIES

log = get_logger("pipeline")
_START_RETRY = RetryPolicy(5, 0.5, 4.0)  # about 10 s of retries for the reads that open a job
# Pending items read from the job database (and looked up in Weaviate) per query.
_FETCH_WINDOW = 1000


def job_kind(system: MemorySystem, request: ImportRequest) -> JobKind:
    """The kind of job a request asks for."""
    if request.reembed_into:
        return Reembed(system, request)
    return FileImport(system)


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
            refused = self.other_embedder(request)
            if refused:
                jobs.set_state(job_id, "failed", refused)
            else:
                self._run_kind(job, kind)
        except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
            log.error("import %s stopped: %s", job_id, e, exc_info=True, extra=event("import.stopped", error=type(e).__name__))
            jobs.record_stop(job_id, "failed", stopped_because(e, self.system.settings.secrets))
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

    def other_embedder(self, request: ImportRequest) -> str:
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
        if not self.plan_job(job, kind):
            return
        system = job.system
        with system.store.import_running():
            stopped_early = self._process(job, kind)
        self.end_job(job, kind, stopped_early)

    def plan_job(self, job: JobContext, kind: JobKind) -> bool:
        """The start of a run (here, or by `memsys worker`): the collection's embedder
        checked, the job planned unless it is, the embedder and the store made ready.
        False when the job was cancelled meanwhile (it is marked so)."""
        jobs, job_id, system = self.jobs, job.job_id, job.system
        # A schema read at the start: a cluster answers 500 for a few seconds after a node
        # dies, so it is retried for about ten seconds whatever the job's own retry count.
        _START_RETRY.run(
            lambda: check_embedder(system),
            is_retryable=lambda e: isinstance(e, weaviate_errors(OSError)),
            what="the collection's embedder check",
        )
        if not jobs.require(job_id).planned:
            read_started = time.monotonic()
            kind.plan(job)
            jobs.add_stage_seconds(job_id, read=time.monotonic() - read_started)
        else:
            jobs.finish_planning(job_id)
        if jobs.cancel_requested(job_id):
            jobs.set_state(job_id, "cancelled")
            return False
        # Several endpoints must serve one model: refused here, before a vector is written.
        system.router.provider.verify()
        system.store.client  # (re)starts this data directory's server if it is down
        return True

    def end_job(self, job: JobContext, kind: JobKind, stopped_early: str) -> None:
        """The end of a run: cancelled, failed (`stopped_early` says why) or completed
        (the kind's completion done, the job's wait for the index recorded)."""
        jobs, job_id = self.jobs, job.job_id
        if jobs.cancel_requested(job_id):
            jobs.set_state(job_id, "cancelled")
        elif stopped_early:
            jobs.set_state(job_id, "failed", stopped_early)
        else:
            self.last_index_wait = kind.complete(job)
            jobs.add_stage_seconds(job_id, index_wait=self.last_index_wait)
            jobs.set_state(job_id, "completed")

    # --- processing --------------------------------------------------------------------
    def _process(self, job: JobContext, kind: JobKind) -> str:
        """Process every pending item; returns "" or why the job stopped early."""
        jobs, job_id = self.jobs, job.job_id
        run = self.new_run(job, kind)
        batches = BatchWork(run)
        config = run.config
        work: queue.Queue[PreparedBatch | None] = queue.Queue(maxsize=config.queue_depth)
        writers = [threading.Thread(target=self._writer, args=(batches, work), daemon=True, name=f"memsys-writer-{i}")
                   for i in range(config.write_workers)]
        for w in writers:
            w.start()
        try:
            self._prepare_all(batches, work)
        finally:
            for _ in writers:
                work.put(None)
            for w in writers:
                w.join()
            jobs.clear_stages(job_id)  # nothing is in flight any more
        return "" if run.stop.cancelled else run.stop.reason

    def new_run(self, job: JobContext, kind: JobKind) -> JobRun:
        """What the batches of one run of a job share: its settings, embedder (with the
        job's cache folder), retries, and the hashes of its documents."""
        jobs, job_id, system = self.jobs, job.job_id, job.system
        config = job.request.config
        retry = RetryPolicy(config.max_retries, config.base_retry_delay, config.max_retry_delay)
        run = JobRun(
            job, kind, config, retry,
            embedder=JobEmbedder(
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
        return run

    def _prepare_all(self, batches: BatchWork, work: "queue.Queue[PreparedBatch | None]") -> None:
        """Cut the pending items into batches and prepare them, `parallel` at once: while
        one waits for the embedder, another checks what Weaviate already has. Prepared
        batches go to the writers."""
        run = batches.run
        config, provider = run.config, run.job.system.router.provider
        # Enough batches in flight to fill every endpoint's slots (a remote provider's round
        # trip is hidden by concurrency; the budget, not this number, keeps it under its limit).
        parallel = max(config.embed_workers, provider.parallelism)
        batch_no = self.jobs.next_batch_no(run.job_id)
        in_flight: set[Future[None]] = set()

        def prepare(number: int, batch: list[PendingItem]) -> None:
            with job_context(run.job_id, number):
                prepared = batches.prepare(number, batch)
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

    def _pending(self, run: JobRun) -> Iterator[PendingItem]:
        """Pending items in order, a window at a time. What Weaviate already holds for a
        window is asked in one query and left in `run.known` for the batches; if that
        query fails, each batch asks again for itself, with retries."""
        after = -1
        while True:
            window = self.jobs.pending_items(run.job_id, after_seq=after, limit=_FETCH_WINDOW)
            if not window:
                return
            uuids = [item.uuid for item in window]
            lookup_started = time.monotonic()
            try:
                stored = run.store.existing(uuids, properties=SETTLE_PROPERTIES)
            except weaviate_errors(OSError) as e:
                log.warning("Weaviate did not answer which of %d items it holds (each batch asks again): %s", len(uuids), e,
                            extra=event("store.lookup.failed", items=len(uuids), error=type(e).__name__, reason=str(e)))
                stored = None
            self.jobs.add_stage_seconds(run.job_id, lookup=time.monotonic() - lookup_started)
            if stored is not None:
                run.known.update((u, stored.get(u)) for u in uuids)
            yield from window
            after = window[-1].seq

    # --- writing -----------------------------------------------------------------------
    @staticmethod
    def _writer(batches: BatchWork, work: "queue.Queue[PreparedBatch | None]") -> None:
        """Finish the prepared batches the queue hands this writer thread, until None."""
        run = batches.run
        while True:
            prepared = work.get()
            if prepared is None:
                return
            with job_context(run.job_id, prepared.batch_no):
                try:
                    batches.finish(prepared)
                except Exception as e:  # noqa: BLE001 - the batch's items stay pending: a resume redoes them
                    log.error("batch %d stopped the import: %s", prepared.batch_no, e, exc_info=True,
                              extra=event("batch.stopped", error=type(e).__name__))
                    run.stop.stop(batches.plain(e))
