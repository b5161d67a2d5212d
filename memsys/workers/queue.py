"""The queue jobs go through to `memsys worker` processes: procrastinate, keeping its
queue in PostgreSQL (MEMSYS_QUEUE_URL). `JobQueue` hands work out (a job to plan, a part
of its files to read, their merge, a batch to run, a job to complete), each under a queueing lock so a piece of work waits in
the queue at most once; the runner of a process whose jobs go to workers is
memsys/workers/runner.py.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from procrastinate import App, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

from memsys.errors import JobStoreError
from memsys.logs import event, get_logger, register_secrets
from memsys.workers.settings import WorkerSettings

log = get_logger("workers")
QUEUE = "memsys"
PLAN, BATCH, COMPLETE = "memsys.plan", "memsys.batch", "memsys.complete"
READ, MERGE = "memsys.read", "memsys.merge"
# A hand-out the queue's database refused (restarting) is tried again this many times.
_DEFER_TRIES = 20
_DEFER_WAIT = 0.5


class QueueUnavailable(JobStoreError):
    """The queue's database did not answer."""


class JobQueue:
    """Hands work to the workers through procrastinate (a synchronous connection pool,
    opened on first use, safe from any thread)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        register_secrets(settings.secrets)
        self._lock = threading.Lock()
        self._app: App | None = None

    def app(self) -> App:
        with self._lock:
            if self._app is None:
                # procrastinate's pool tries each connection before use: one left from
                # before the database restarted is replaced instead of failing the call.
                app = App(connector=SyncPsycopgConnector(conninfo=self.settings.queue_url, min_size=1, max_size=4))
                app.open()
                ensure_schema(app)
                self._app = app
            return self._app

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None

    def plan(self, job_id: str) -> bool:
        return self._defer(PLAN, f"plan:{job_id}", job_id=job_id)

    def batch(self, job_id: str, batch_no: int, again: bool = False) -> bool:
        """Queue a batch; `again` (its lease ran out) before the batches not yet started,
        so a batch taken over is not left for last."""
        return self._defer(BATCH, f"batch:{job_id}:{batch_no}", priority=1 if again else 0, job_id=job_id,
                           batch_no=batch_no)

    def read(self, job_id: str, read_no: int, again: bool = False) -> bool:
        """Queue a part of a job's files to read (`again`: its lease ran out)."""
        return self._defer(READ, f"read:{job_id}:{read_no}", priority=1 if again else 0, job_id=job_id, read_no=read_no)

    def merge(self, job_id: str) -> bool:
        """Queue the merge of a job's parts, once all are read."""
        return self._defer(MERGE, f"merge:{job_id}", priority=2, job_id=job_id)

    def complete(self, job_id: str) -> bool:
        return self._defer(COMPLETE, f"complete:{job_id}", priority=2, job_id=job_id)

    def _defer(self, task: str, queueing_lock: str, priority: int = 0, **kwargs: Any) -> bool:
        """Put one piece of work in the queue; False when the same is already waiting
        there. Retried while the queue's database restarts (about ten seconds). No
        procrastinate `lock`: a worker killed while holding one would hold up every job
        after it; the leases in the job database say who may write instead."""
        for attempt in range(_DEFER_TRIES):
            try:
                self.app().configure_task(task, queue=QUEUE, queueing_lock=queueing_lock, priority=priority).defer(**kwargs)
                return True
            except AlreadyEnqueued:
                return False
            except (ConnectorException, psycopg.Error, OSError) as e:
                if attempt + 1 == _DEFER_TRIES:
                    raise QueueUnavailable("queue", f"the queue's database {self.settings.queue_name} did not answer: "
                                                    f"{e}; start it (or check MEMSYS_QUEUE_URL) and resume the import") from e
                log.warning("the queue's database did not take %s (try %d): %s", task, attempt + 1, e,
                            extra=event("queue.retry", task=task, error=type(e).__name__))
                time.sleep(_DEFER_WAIT)
        return False


def ensure_schema(app: App) -> None:
    """procrastinate's tables, made once (several workers may start at once)."""
    def present() -> bool:
        row = app.connector.execute_query_one("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ok")
        return bool(row["ok"])

    if present():
        return
    try:
        app.schema_manager.apply_schema()
    except Exception:  # noqa: BLE001 - another worker made them at the same moment
        if not present():
            raise
