"""The job runner of a process whose jobs go to `memsys worker` processes (the
dashboard, the CLI, scripts), with the same calls as the in-process `JobRunner`
(memsys/jobs/runner.py): submitting queues a job for planning by any worker; cancel,
resume and retry act through the job database, which every worker reads, so they work
whichever worker has the job.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from memsys.errors import JobStoreError

from memsys.jobs.database import JobStore
from memsys.jobs.records import JobProgress
from memsys.jobs.runner import RunnerCalls
from memsys.logs import event, get_logger
from memsys.spool import Spool
from memsys.workers.leases import LeaseTables

log = get_logger("workers")


class WorkQueue(Protocol):
    """Where jobs are handed to the workers (memsys/workers/queue.py: `JobQueue`)."""

    def plan(self, job_id: str) -> bool: ...

    def close(self) -> None: ...


class QueueRunner(RunnerCalls):
    """The job runner when jobs go to workers."""

    def __init__(self, store: JobStore, leases: LeaseTables, queue: WorkQueue, spool: Spool | None = None,
                 after_submit: Callable[[], object] | None = None) -> None:
        self.store = store
        self.leases = leases
        self.queue = queue
        self.spool = spool
        # This process's own retention (its spool): the workers run theirs when a job ends,
        # but on several machines the files were spooled here, and only here can they go.
        self.after_submit = after_submit

    def submit(self, job_id: str) -> None:
        # With the spool in a bucket (MEMSYS_SPOOL_BACKEND=s3), the job's files go there
        # first, for workers on machines without this one's spool.
        if self.spool is not None:
            self.spool.publish(self.store.request(job_id).get("paths") or [])
        self.store.mark_queued(job_id)
        self.leases.hand_to_workers(job_id)
        self.queue.plan(job_id)
        if self.after_submit is not None:
            try:
                self.after_submit()
            except (JobStoreError, OSError) as e:  # the job is queued; the next submit tries again
                log.warning("retention after queueing job %s failed: %s", job_id, e,
                            extra=event("retention.failed", job_id=job_id))

    def is_busy(self) -> bool:
        return False  # the work is the workers'; this process holds none of it

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> JobProgress:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.store.require(job_id)
            if not job.is_active:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
