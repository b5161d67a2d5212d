"""The job runner: one background thread per process takes the jobs submitted to it one
after another and runs each with the callable it was given. It never touches the UI: the
UI and CLI read progress from the job database. A job that raises is marked failed with
its reason and the runner takes the next one.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from memsys.errors import JobStoreError, scrub
from memsys.jobs.database import JobStore
from memsys.jobs.retention import refuse_if_pruned
from memsys.jobs.records import JobProgress
from memsys.logs import get_logger

log = get_logger("jobs")
# A stop that could not be written (full disk, ...) is tried again this often.
_RECORD_RETRY_SECONDS = 2.0


class RunnerCalls:
    """What every job runner does the same way through the job database, whoever runs the
    job (this process's `JobRunner`, or the workers' `QueueRunner`): cancel, resume and
    retry. A runner gives `store` and `submit`."""

    store: JobStore

    def submit(self, job_id: str) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        self.store.request_cancel(job_id)

    def resume(self, job_id: str) -> str:
        job = self.store.require(job_id)
        if job.is_active:
            raise ValueError(f"job {job_id} is {job.state}; it is already going")
        refuse_if_pruned(self.store, job_id, "be resumed")
        self.store.recount(job_id)
        self.submit(job_id)
        return job_id

    def retry_failed(self, job_id: str) -> int:
        """Re-run only the failed items of a finished job; returns how many will be retried."""
        job = self.store.require(job_id)
        if job.is_active:
            raise ValueError(f"job {job_id} is {job.state}; wait for it to finish before retrying its failed items")
        refuse_if_pruned(self.store, job_id, "have its failed items retried")
        n = self.store.reset_failed(job_id)
        if n or job.pending:
            self.submit(job_id)
        return n


class JobRunner(RunnerCalls):
    """Runs jobs one after another in a background thread (one runner per process).
    Submitting from any thread is safe; the UI and CLI only read progress from the store."""

    def __init__(self, store: JobStore, run_job: Callable[[str], None]) -> None:
        self.store = store
        self._run_job = run_job
        self._queue: queue.Queue[str] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)  # notified when a job of this runner ends
        self._thread = threading.Thread(target=self._loop, name="memsys-job-runner", daemon=True)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        """Queue a job. If the store cannot record that (JobStoreError), nothing is queued
        and the runner is not left busy."""
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        try:
            self.store.mark_queued(job_id)
        except BaseException:
            with self._lock:
                self._queued.discard(job_id)
            raise
        self._queue.put(job_id)

    def is_busy(self) -> bool:
        with self._lock:
            return bool(self._queued)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> JobProgress:
        """Block until the job is no longer active (tests and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                queued = job_id in self._queued
            job = self.store.require(job_id)
            if not queued and not job.is_active:
                return job
            left = poll if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
            with self._finished:
                # A job of this process wakes the waiter at once; one run by another
                # process (or a state change in the store) is seen at the next poll.
                self._finished.wait_for(lambda: job_id not in self._queued if queued else False, min(poll, left))

    def _loop(self) -> None:
        """Take jobs one by one for the life of the process. Nothing a job does ends this
        loop: a job that raises is marked failed with its reason (shown at once, written
        when the database takes it), and the next job is taken."""
        while True:
            try:
                job_id = self._queue.get(timeout=_RECORD_RETRY_SECONDS)
            except queue.Empty:
                self.store.flush_unrecorded()
                continue
            try:
                self._run_one(job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)
                    self._finished.notify_all()

    def _run_one(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
            if job is not None and job.state != "cancelled":
                self._run_job(job_id)
        except Exception as e:  # noqa: BLE001 - any error is this job's; the runner lives on
            log.error("job %s stopped: %s", job_id, e, exc_info=True, extra={"job_id": job_id})
            self.store.record_stop(job_id, "failed", _stopped_because(e))


def _stopped_because(e: BaseException) -> str:
    message = str(e)
    if isinstance(e, JobStoreError) or not message:
        return f"the import stopped: {message or type(e).__name__}"
    return f"the import stopped: {type(e).__name__}: {scrub(message)[:300]}"
