"""What a `memsys worker` does with the work the queue hands it: plan a job (a job of
several files: cut them into parts that workers read, OCR and chunk one each, then merge
what they read in file order), cut it into batch leases, run one batch under its lease
(fenced: a late result of a lease that ran out is refused), complete a job once every
batch is settled. The same pipeline code as the in-process runner does each part
(memsys/jobs/pipeline.py, imports.py, batches.py), so a job ends with the same items,
counts and memories whichever runs it.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from memsys.errors import JobStoreError
from memsys.jobs.batches import BatchWork, JobRun, PreparedBatch, stopped_because
from memsys.jobs.batching import AdaptiveBatchSizer, plan_batches
from memsys.jobs.imports import FileImport, ReadPiece
from memsys.jobs.kinds import JobContext
from memsys.jobs.metrics import BatchRecord
from memsys.jobs.pipeline import ImportPipeline, job_kind
from memsys.jobs.database import JobStore
from memsys.jobs.request import ImportRequest
from memsys.logs import event, get_logger, job_context
from memsys.api import MemorySystem
from memsys.spool import Spool
from memsys.ingest.readers import ReadTally
from memsys.ingest.workers import ReadCancelled
from memsys.workers.leases import Lease, LeaseLost, worker_id
from memsys.workers.queue import JobQueue
from memsys.workers.reads import MERGE, ReadLease, ReadLeases
from memsys.workers.settings import WorkerSettings

log = get_logger("workers")
# A job whose documents another import is replacing is planned again this much later.
_CLAIM_WAIT_SECONDS = 2.0
# Pieces a reader stores per write.
_PIECES_PER_WRITE = 200


AnyLease = Lease | ReadLease


class HeldLeases:
    """The leases this worker holds now, on batches and on parts of files (renewed by its
    heartbeat); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str, int], AnyLease] = {}
        self._lost: set[tuple[tuple[str, str, int], int]] = set()

    def add(self, lease: AnyLease) -> None:
        with self._lock:
            self._held[lease.key] = lease

    def remove(self, lease: AnyLease) -> None:
        with self._lock:
            self._held.pop(lease.key, None)
            self._lost.discard((lease.key, lease.token))

    def all(self) -> list[AnyLease]:
        with self._lock:
            return list(self._held.values())

    def lose(self, lease: AnyLease) -> None:
        with self._lock:
            self._lost.add((lease.key, lease.token))

    def is_lost(self, lease: AnyLease) -> bool:
        with self._lock:
            return (lease.key, lease.token) in self._lost


class FencedBatchWork(BatchWork):
    """One batch run under a lease: before its write to Weaviate the lease is renewed
    (refused when it ran out or was taken over), and its record in the job database
    checks the lease in the same transaction."""

    def __init__(self, run: JobRun, lease: Lease, leases: ReadLeases, worker: str, lease_seconds: float) -> None:
        super().__init__(run)
        self.lease = lease
        self.leases = leases
        self.worker = worker
        self.lease_seconds = lease_seconds

    def _check(self) -> None:
        if not self.leases.renew(self.lease, self.lease_seconds):
            raise LeaseLost(f"batch {self.lease.batch_no}'s lease (token {self.lease.token}) ran out before its write")

    def _write(self, prepared: PreparedBatch) -> None:
        if prepared.to_write:
            self._check()
        super()._write(prepared)

    def _rewrite(self, prepared: PreparedBatch) -> None:
        if prepared.to_update:
            self._check()
        super()._rewrite(prepared)

    def record(self, record: BatchRecord, prepared: PreparedBatch) -> None:
        self.run.job.jobs.record_batch(record, prepared.outcomes, fence=self.leases.fence(self.lease, self.worker))


class WorkerJobs:
    """The tasks of a worker, over this process's memory system and job database."""

    def __init__(self, system: MemorySystem, jobs: JobStore, leases: ReadLeases, queue: JobQueue,
                 settings: WorkerSettings, held: HeldLeases, after_job: Any = None, spool: Spool | None = None) -> None:
        self.system = system
        self.jobs = jobs
        self.leases = leases
        self.queue = queue
        self.settings = settings
        self.held = held
        self.pipeline = ImportPipeline(system, jobs)
        self.worker = worker_id()
        self._after_job = after_job
        self.spool = spool

    def _context(self, job_id: str) -> tuple[JobContext, Any]:
        request = ImportRequest.from_json(self.jobs.request(job_id))
        kind = job_kind(self.system, request)
        return JobContext(job_id, request, self.jobs, kind.system), kind

    # --- planning ----------------------------------------------------------------------
    def plan(self, job_id: str) -> None:
        jobs = self.jobs
        job = jobs.get(job_id)
        if job is None or job.state in ("cancelled", "completed", "failed"):
            return
        with job_context(job_id):
            if jobs.cancel_requested(job_id):
                self.leases.drop_reads(job_id)
                jobs.set_state(job_id, "cancelled")
                return
            request = ImportRequest.from_json(jobs.request(job_id))
            jobs.claim(job_id)
            self.leases.hand_to_workers(job_id)
            log.info("import %s started by worker %s: %s", job_id, self.worker, request.label,
                     extra=event("import.started", label=request.label, worker=self.worker))
            try:
                ctx, kind = self._context(job_id)
                refused = self.pipeline.other_embedder(request)
                if refused:
                    jobs.set_state(job_id, "failed", refused)
                    return
                if not job.planned and isinstance(kind, FileImport):
                    # With the spool in a bucket (MEMSYS_SPOOL_BACKEND=s3), files this machine
                    # lacks are cut into parts by the sizes the bucket lists.
                    remote = self.spool.remote_sizes(request.paths) if self.spool is not None else {}
                    parts = kind.read_parts(request.paths, remote)
                    if len(parts) > 1:
                        self._hand_out_reads(job_id, parts)
                        return  # the worker that reads the last part queues the merge
                self._planned(ctx, kind)
            except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
                log.error("import %s stopped: %s", job_id, e, exc_info=True, extra=event("import.stopped", error=type(e).__name__))
                jobs.record_stop(job_id, "failed", self._plain(e))
                self.leases.release_documents(job_id)

    def _planned(self, ctx: JobContext, kind: Any) -> None:
        """Plan the job unless it is (here, by one worker), claim its documents, hand its
        batches out."""
        job_id = ctx.job_id
        # The spooled files this machine lacks, from the bucket (MEMSYS_SPOOL_BACKEND=s3);
        # once read into the job's memories they are not needed here again.
        fetched: list[Path] = []
        if self.spool is not None and not self.jobs.require(job_id).planned:
            local, fetched = self.spool.localize(ctx.request.paths)
            ctx = dataclasses.replace(ctx, request=dataclasses.replace(ctx.request, paths=tuple(local)))
        try:
            if not self.pipeline.plan_job(ctx, kind):
                return
        finally:
            if self.spool is not None:
                self.spool.discard(fetched)
        others = self.leases.claim_documents(job_id, [d.document_id for d in self.jobs.documents(job_id)])
        if others:
            log.info("import %s waits: import %s is replacing some of the same documents", job_id, others[0],
                     extra=event("import.waits", other=others[0]))
            time.sleep(_CLAIM_WAIT_SECONDS)
            self.queue.plan(job_id)
            return
        self._hand_out(ctx)

    # --- reading a job's files, a part per worker ------------------------------------------
    def _hand_out_reads(self, job_id: str, parts: list[tuple[str, ...]]) -> None:
        self.jobs.reset_plan(job_id)
        numbers = self.leases.create_reads(job_id, parts, self.settings.lease_seconds)
        log.info("import %s: its %d files handed to the workers to read in %d parts", job_id,
                 sum(len(p) for p in parts), len(numbers), extra=event("import.reads_queued", parts=len(numbers)))
        for n in numbers:
            self.queue.read(job_id, n)

    def read(self, job_id: str, read_no: int) -> None:
        """Read, OCR and chunk one part of a job's files under its lease; the worker that
        reads the last part queues the merge."""
        lease = self.leases.acquire_read(job_id, read_no, self.worker, self.settings.lease_seconds)
        if lease is None:
            return  # read, or another worker holds it
        self.held.add(lease)
        try:
            with job_context(job_id):
                self._run_read(lease)
        finally:
            self.held.remove(lease)
        if self.leases.unsettled_reads(job_id) == 0:
            self.queue.merge(job_id)

    def _run_read(self, lease: ReadLease) -> None:
        jobs, job_id, leases = self.jobs, lease.job_id, self.leases
        job = jobs.get(job_id)
        if job is None or job.state != "planning" or jobs.cancel_requested(job_id):
            leases.release_read(lease, "dropped")  # a resume plans again
            return
        if lease.taken_over:
            log.warning("read of part %d taken over by worker %s: the worker before did not renew its lease", lease.read_no,
                        self.worker, extra=event("read.taken_over", worker=self.worker, token=lease.token, part=lease.read_no))
        ctx, kind = self._context(job_id)
        seconds = self.settings.lease_seconds
        started = time.monotonic()
        stored = 0
        waiting: list[ReadPiece] = []

        def store() -> None:
            nonlocal stored
            leases.add_pieces(lease, stored, waiting, seconds)
            stored += len(waiting)
            waiting.clear()

        fetched: list[Path] = []
        try:
            # The part's files from the spool's bucket when this machine lacks them (read, then removed).
            paths, fetched = self.spool.localize(lease.paths) if self.spool is not None else (list(lease.paths), [])
            tally = ReadTally(on_ocr_page=lambda pages: leases.read_ocr_pages(lease, pages))
            for piece in kind.read(ctx.request, paths, tally,
                                   cancelled=lambda: self.held.is_lost(lease) or jobs.cancel_requested(job_id)):
                waiting.append(piece)
                if len(waiting) >= _PIECES_PER_WRITE:
                    store()
            store()
            leases.finish_read(lease, self.worker, stored, time.monotonic() - started, seconds)
        except (LeaseLost, ReadCancelled) as e:
            if isinstance(e, ReadCancelled) and not self.held.is_lost(lease):
                leases.release_read(lease, "dropped")  # cancelled: the job plans again on resume
                return
            leases.refused_read(lease)
            log.warning("part %d: not stored by worker %s, its lease ran out and another worker reads it", lease.read_no,
                        self.worker, extra=event("read.fenced", worker=self.worker, token=lease.token, part=lease.read_no))
            return
        except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
            log.error("reading part %d stopped the import: %s", lease.read_no, e, exc_info=True,
                      extra=event("read.stopped", error=type(e).__name__))
            leases.release_read(lease, "dropped")
            jobs.record_stop(job_id, "failed", self._plain(e))
            return
        finally:
            if self.spool is not None:
                self.spool.discard(fetched)
        log.info("part %d of import %s read by worker %s: %d pieces in %.1f s", lease.read_no, job_id, self.worker, stored,
                 time.monotonic() - started, extra=event("read.done", worker=self.worker, part=lease.read_no, pieces=stored))

    def merge(self, job_id: str) -> None:
        """Once every part is read: plan the job from the pieces in file order (under the
        merge's lease), then hand its batches out."""
        jobs, leases = self.jobs, self.leases
        job = jobs.get(job_id)
        if job is None or job.state not in ("planning", "cancelling") or job.planned:
            leases.drop_merge(job_id)  # stopped (or merged): nothing to hand out again
            return
        with job_context(job_id):
            if leases.unsettled_reads(job_id):
                return  # the last reader queues the merge again
            if jobs.cancel_requested(job_id):
                leases.drop_reads(job_id)
                jobs.set_state(job_id, "cancelled")
                return
            again = leases.redo_dropped(job_id, self.settings.lease_seconds)
            if again:  # dropped by a stop that was undone since
                for n in again:
                    self.queue.read(job_id, n)
                return
            lease = leases.acquire_read(job_id, MERGE, self.worker, self.settings.lease_seconds)
            if lease is None:
                return  # merged, or another worker merges
            self.held.add(lease)
            try:
                ctx, kind = self._context(job_id)
                jobs.reset_plan(job_id)  # what a merge before that lost its lease added
                jobs.set_ocr_pages(job_id, leases.ocr_pages_read(job_id))
                started = leases.read_started(job_id)
                if not kind.merge(ctx, leases.pieces(job_id), fence=leases.read_fence(lease, self.settings.lease_seconds)):
                    leases.drop_reads(job_id)
                    jobs.set_state(job_id, "cancelled")
                    return
                leases.finish_read(lease, self.worker, 0, 0.0, self.settings.lease_seconds)
                leases.clear_pieces(job_id)
                if started is not None:
                    jobs.add_stage_seconds(job_id, read=time.time() - started)
                self._planned(ctx, kind)
            except LeaseLost as e:
                leases.refused_read(lease)
                log.warning("import %s: the merge of its files' parts by worker %s was refused (%s)", job_id, self.worker, e,
                            extra=event("read.fenced", worker=self.worker, token=lease.token, part=MERGE))
            except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
                log.error("import %s stopped: %s", job_id, e, exc_info=True, extra=event("import.stopped", error=type(e).__name__))
                leases.release_read(lease, "dropped")
                jobs.record_stop(job_id, "failed", self._plain(e))
                leases.release_documents(job_id)
            finally:
                self.held.remove(lease)

    def _hand_out(self, ctx: JobContext) -> None:
        """Cut the pending items into batches (as the in-process run would), record their
        leases and queue them."""
        config = ctx.request.config
        provider = self.system.router.provider
        pending = self._all_pending(ctx.job_id)
        batches = [[item.seq for item in batch] for batch in
                   plan_batches(pending, config, AdaptiveBatchSizer(config).observe, provider.max_inputs_per_request)]
        numbers = self.leases.create_leases(ctx.job_id, batches, self.settings.lease_seconds)
        log.info("import %s handed to the workers in %d batches", ctx.job_id, len(numbers),
                 extra=event("import.queued", batches=len(numbers)))
        for n in numbers:
            self.queue.batch(ctx.job_id, n)
        if not numbers:
            self.queue.complete(ctx.job_id)

    def _all_pending(self, job_id: str) -> Any:
        after = -1
        while True:
            window = self.jobs.pending_items(job_id, after_seq=after, limit=1000)
            if not window:
                return
            yield from window
            after = window[-1].seq

    # --- one batch -----------------------------------------------------------------------
    def batch(self, job_id: str, batch_no: int) -> None:
        lease = self.leases.acquire(job_id, batch_no, self.worker, self.settings.lease_seconds)
        if lease is None:
            return  # settled, or another worker holds it
        self.held.add(lease)
        try:
            with job_context(job_id, batch_no):
                self._run_batch(lease)
        finally:
            self.held.remove(lease)
        if self.leases.unsettled(job_id) == 0:
            self.queue.complete(job_id)

    def _run_batch(self, lease: Lease) -> None:
        jobs, job_id = self.jobs, lease.job_id
        job = jobs.get(job_id)
        if job is None or job.state != "running" or jobs.cancel_requested(job_id):
            self.leases.release(lease, "dropped")  # its items stay pending for a resume
            return
        items = self.leases.pending_in(lease)
        if not items:
            self.leases.release(lease, "done")
            return
        if lease.taken_over:
            log.warning("batch %d taken over by worker %s: the worker before did not renew its lease", lease.batch_no,
                        self.worker, extra=event("batch.taken_over", worker=self.worker, token=lease.token))
        ctx, kind = self._context(job_id)
        run = self.pipeline.new_run(ctx, kind)
        work = FencedBatchWork(run, lease, self.leases, self.worker, self.settings.lease_seconds)
        try:
            with self.system.store.import_running():
                prepared = work.prepare(lease.batch_no, items)
                work.finish(prepared)
        except LeaseLost as e:
            jobs.clear_stages(job_id, list(lease.seqs))
            self.leases.refused(lease)
            log.warning("batch %d: not recorded by worker %s, its lease ran out and another worker has the batch (%s)",
                        lease.batch_no, self.worker, e, extra=event("batch.fenced", worker=self.worker, token=lease.token))
            return
        except Exception as e:  # noqa: BLE001 - the batch's items stay pending: a resume redoes them
            log.error("batch %d stopped the import: %s", lease.batch_no, e, exc_info=True,
                      extra=event("batch.stopped", error=type(e).__name__))
            self.leases.release(lease, "dropped")
            jobs.record_stop(job_id, "failed", work.plain(e))
            return
        if prepared.cancelled or run.stop.cancelled:
            self.leases.release(lease, "dropped")
        elif run.stop.reason:
            jobs.set_state(job_id, "failed", run.stop.reason)  # continue_on_error off: no further batch starts

    # --- the end of a job ----------------------------------------------------------------
    def complete(self, job_id: str) -> None:
        jobs = self.jobs
        job = jobs.get(job_id)
        if job is None or job.state not in ("running", "cancelling", "failed", "cancelled"):
            return
        if self.leases.unsettled(job_id):
            return
        with job_context(job_id):
            try:
                if job.state in ("failed", "cancelled"):
                    pass  # stopped; its pending items wait for a resume
                elif jobs.cancel_requested(job_id):
                    jobs.set_state(job_id, "cancelled")
                elif job.pending:
                    ctx, _ = self._context(job_id)
                    self._hand_out(ctx)  # batches dropped on the way (a stop undone): handed out again
                    return
                else:
                    ctx, kind = self._context(job_id)
                    self.pipeline.end_job(ctx, kind, "")
            except Exception as e:  # noqa: BLE001 - recorded on the job, which stays resumable
                log.error("import %s stopped: %s", job_id, e, exc_info=True, extra=event("import.stopped", error=type(e).__name__))
                jobs.record_stop(job_id, "failed", self._plain(e))
            self.leases.release_documents(job_id)
            final = jobs.require(job_id)
            log.log(logging.INFO if final.state == "completed" and not final.failed else logging.WARNING,
                    "import %s %s: %d written, %d updated, %d unchanged, %d failed of %d items%s", job_id, final.state,
                    final.written, final.updated, final.unchanged, final.failed, final.total,
                    f"; {final.error}" if final.error else "",
                    extra=event("import.done", state=final.state, written=final.written, updated=final.updated,
                                removed=final.removed, unchanged=final.unchanged, failed=final.failed, total=final.total,
                                pending=final.pending, batches=final.batches_done, error=final.error, worker=self.worker))
        if self._after_job is not None:
            try:
                self._after_job(job_id)
            except (JobStoreError, OSError) as e:
                log.warning("retention after job %s failed: %s", job_id, e, extra=event("retention.failed", job_id=job_id))

    def _plain(self, e: BaseException) -> str:
        return stopped_because(e, self.system.settings.secrets)
