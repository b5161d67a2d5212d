"""Jobs: their progress, items, batches and metrics; following, cancelling, resuming,
retrying and verifying them."""
from __future__ import annotations

import dataclasses
import io
from typing import Iterable

from memsys.access import action
from memsys.store.replication import ReplicationReport, verify_replication
from memsys.audit import AuditAction, AuditOutcome
from memsys.jobs import FAILED_PAGE, FailedItem, FileState, JobProgress
from memsys.logs import default_actor
from memsys.jobs.metrics import BatchMetrics, BatchRecord
from memsys.engine.calls import OPERATOR, VIEWER, Calls, audited
from memsys.engine.records import ProgressCallback


class Jobs(Calls):
    """Import and re-embed jobs: their progress, items, batches and metrics; following,
    cancelling, resuming and retrying them."""

    @action(OPERATOR, "running an import")
    def run(self, job_id: str) -> None:
        """Queue a recorded job on this process's runner."""
        self._engine.runner.submit(job_id)

    @action(VIEWER, "following a job")
    def follow(self, job_id: str, on_progress: ProgressCallback | None = None, poll: float = 0.25) -> JobProgress:
        """Wait for a job to end, calling `on_progress` with its progress about every
        `poll` seconds; returns its final progress."""
        engine = self._engine
        while True:
            try:
                job = engine.runner.wait(job_id, timeout=poll, poll=min(poll, 0.1))
            except TimeoutError:
                if on_progress is not None:
                    on_progress(engine.job_store.require(job_id))
                continue
            if on_progress is not None:
                on_progress(job)
            return job

    @action(VIEWER, "following a job")
    def wait(self, job_id: str, timeout: float | None = None) -> JobProgress:
        return self._engine.runner.wait(job_id, timeout=timeout)

    @action(OPERATOR, "cancelling an import", audit=AuditAction.IMPORT_CANCELLED)
    def cancel(self, job_id: str, *, actor: str | None = None) -> bool:
        """Ask a job to stop (works across processes): within about a second, between two
        embedding calls or before a write; what is written stays written, the rest stays
        pending for a resume. False, and the refusal recorded, when the job is not going."""
        engine = self._engine
        job = engine.job_store.require(job_id)
        if not job.is_active:
            engine.audit_trail.record(AuditAction.IMPORT_CANCELLED, actor or default_actor(), target=job_id,
                                      outcome=AuditOutcome.REFUSED,
                                      details={"state": job.state, "reason": f"job {job_id} is {job.state}; nothing to cancel"})
            return False
        with audited(engine.audit_trail, AuditAction.IMPORT_CANCELLED, actor, job_id, {"state": job.state}) as details:
            engine.runner.cancel(job_id)
            details.update(processed=job.processed, pending=job.pending, total=job.total)
        return True

    @action(OPERATOR, "resuming an import", audit=AuditAction.IMPORT_RESUMED)
    def resume(self, job_id: str, *, actor: str | None = None) -> str:
        """Continue a cancelled, failed or interrupted job in the background."""
        engine = self._engine
        job = engine.job_store.require(job_id)
        with audited(engine.audit_trail, AuditAction.IMPORT_RESUMED, actor, job_id,
                     {"state": job.state, "pending": job.pending}):
            return engine.runner.resume(job_id)

    @action(OPERATOR, "retrying failed items", audit=AuditAction.IMPORT_RETRIED)
    def retry_failed(self, job_id: str, *, actor: str | None = None) -> int:
        """Re-run a finished job's failed items in the background; returns how many."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.IMPORT_RETRIED, actor, job_id) as details:
            details["items"] = engine.runner.retry_failed(job_id)
        return int(details["items"])

    @action(VIEWER, "reading a job")
    def get(self, job_id: str) -> JobProgress | None:
        """A job's progress; while it runs, with the embedding provider's budget in use."""
        job = self._engine.job_store.get(job_id)
        budget = getattr(self._engine.system.router.provider, "budget", None)
        if job is None or budget is None or not job.is_active:
            return job
        return dataclasses.replace(job, budget=budget.status())

    @action(VIEWER, "reading a job")
    def require(self, job_id: str) -> JobProgress:
        """The job, or ValueError naming the id that does not exist."""
        return self._engine.job_store.require(job_id)

    @action(VIEWER, "reading the jobs")
    def recent(self, limit: int = 50) -> list[JobProgress]:
        return self._engine.job_store.list_jobs(limit=limit)

    @action(VIEWER, "reading a job")
    def file_states(self, job_id: str) -> list[FileState]:
        """Each file of a job, in the order it was read, with where its memories are
        (queued, being embedded or written, done, failed with the reason, not started)."""
        return self._engine.job_store.file_states(job_id)

    @action(VIEWER, "reading a job's failed items")
    def failed_items(self, job_id: str, page: int = 0, per_page: int = FAILED_PAGE) -> list[FailedItem]:
        """Page `page` (from 0) of a job's failed items, in item order; never all at once."""
        return self._engine.job_store.failed_items(job_id, limit=per_page, offset=page * per_page)

    @action(VIEWER, "reading a job's failed items")
    def iter_failed_items(self, job_id: str) -> Iterable[FailedItem]:
        """Every failed item of a job, read from the store a page at a time."""
        return self._engine.job_store.iter_failed_items(job_id)

    @action(VIEWER, "reading a job's warnings")
    def warnings(self, job_id: str, limit: int = 100) -> tuple[int, list[tuple[str, str]]]:
        """(how many warnings the job's files gave, the first `limit` of them as (item, reason)):
        files that were read but not exactly (bytes replaced, an uncertain encoding guess)."""
        return self._engine.job_store.warnings(job_id, limit)

    @action(VIEWER, "reading a job's failed items")
    def failed_counts(self, job_id: str) -> tuple[int, int]:
        """(failed items, how many of them "Retry failed" would try again)."""
        return self._engine.job_store.failed_counts(job_id)

    @action(VIEWER, "reading a job's failed items")
    def failed_items_csv(self, job_id: str) -> str:
        """Every failed item of a job as CSV, read from the store a page at a time."""
        out = io.StringIO()
        self._engine.job_store.write_failed_csv(job_id, out)
        return out.getvalue()

    @action(VIEWER, "reading a job's metrics")
    def batches(self, job_id: str) -> list[BatchRecord]:
        return self._engine.job_store.batches(job_id)

    @action(VIEWER, "reading a job's metrics")
    def errors_by_type(self, job_id: str) -> dict[str, int]:
        return self._engine.job_store.errors_by_type(job_id)

    @action(VIEWER, "reading a job's metrics")
    def metrics(self, job_id: str) -> BatchMetrics:
        """A job's BatchMetrics, rebuilt from its stored batches."""
        return self._engine.job_store.metrics(job_id)

    # Reads only, but asks every node for every memory of a job: an operator's check.
    @action(OPERATOR, "verifying a job's replicas")
    def verify(self, job_id: str) -> ReplicationReport:
        """Check that every memory the job wrote is readable with consistency ALL and on
        as many nodes as the replication factor asks; names the ones that are not (yet)."""
        engine = self._engine
        engine.job_store.require(job_id)
        return verify_replication(engine.system.store, job_id, engine.job_store.stored_items(job_id))
