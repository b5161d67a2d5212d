"""One `memsys worker` process: it registers in the job database (host, pid,
concurrency), runs procrastinate's worker on the memsys queue (`concurrency` batches or
parts of files at once), and a heartbeat thread that every third of the lease renews the
leases it holds, marks itself alive, hands out again the batches and parts whose lease ran
out (another worker's, killed or paused) and completes jobs whose completion was lost. If the queue's database
goes away (restarted), the worker waits for it and carries on; SIGTERM or SIGINT stop it
after the batches it holds.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.worker import Worker

from memsys.config import Settings
from memsys.engine import Engine
from memsys.logs import event, get_logger, set_program
from memsys.workers.leases import worker_id
from memsys.workers.queue import BATCH, COMPLETE, MERGE, PLAN, QUEUE, READ, JobQueue, ensure_schema
from memsys.workers.reads import MERGE as MERGE_READ
from memsys.workers.reads import ReadLease, ReadLeases
from memsys.workers.settings import WorkerSettings
from memsys.workers.work import HeldLeases, WorkerJobs

log = get_logger("workers")
# Seconds between two tries to reach the queue's database while it is away.
_RECONNECT_SECONDS = 1.0


class WorkerProcess:
    def __init__(self, settings: Settings, worker_settings: WorkerSettings, concurrency: int | None = None) -> None:
        self.name = worker_id()
        set_program(f"worker@{self.name.rpartition(':')[0]}")  # log lines read "worker@host:pid"
        self.settings = settings
        self.worker_settings = worker_settings
        self.concurrency = concurrency or worker_settings.concurrency
        self.engine = Engine(settings, program=f"worker@{self.name.rpartition(':')[0]}")
        self.leases = ReadLeases(settings.job_database, timeout=settings.jobs_db_timeout)
        self.beat_leases = ReadLeases(settings.job_database, timeout=settings.jobs_db_timeout)  # the heartbeat's own connection
        self.queue = JobQueue(worker_settings)
        self.held = HeldLeases()
        self.work = WorkerJobs(self.engine.system, self.engine.job_store, self.leases, self.queue, worker_settings,
                               self.held, after_job=self._after_job, spool=self.engine.spool)
        self._stopping = threading.Event()
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _after_job(self, job_id: str) -> None:
        self.engine.retention.after_job()
        self.engine.cache.after_job()

    # --- the heartbeat -----------------------------------------------------------------
    def _heartbeat(self) -> None:
        every = self.worker_settings.heartbeat_seconds
        while not self._stopping.wait(every):
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 - the heartbeat outlives any one failure
                log.warning("worker %s: heartbeat failed: %s", self.name, e, extra=event("worker.heartbeat_failed",
                                                                                     error=type(e).__name__))

    def beat(self) -> None:
        leases, lease_seconds = self.beat_leases, self.worker_settings.lease_seconds
        leases.worker_heartbeat(self.name)
        held = self.held.all()
        for lease in held:
            kept = leases.renew_read(lease, lease_seconds) if isinstance(lease, ReadLease) else leases.renew(lease, lease_seconds)
            if not kept:
                self.held.lose(lease)
        leases.beat_jobs(lease.job_id for lease in held)
        for job_id, read_no in leases.due_reads():
            if read_no == MERGE_READ:
                self.queue.merge(job_id)
            else:
                self.queue.read(job_id, read_no, again=True)
            leases.postpone_read(job_id, read_no, lease_seconds)
        for job_id, batch_no in leases.due():
            self.queue.batch(job_id, batch_no, again=True)
            leases.postpone(job_id, batch_no, lease_seconds)
        for job_id in leases.jobs_to_complete():
            self.queue.complete(job_id)

    # --- the procrastinate worker ----------------------------------------------------------
    def _app(self) -> App:
        app = App(connector=PsycopgConnector(conninfo=self.worker_settings.queue_url, min_size=1,
                                             max_size=self.concurrency + 2))
        work = self.work

        @app.task(name=PLAN, queue=QUEUE)
        def plan(job_id: str) -> None:
            work.plan(job_id)

        @app.task(name=BATCH, queue=QUEUE)
        def batch(job_id: str, batch_no: int) -> None:
            work.batch(job_id, batch_no)

        @app.task(name=READ, queue=QUEUE)
        def read(job_id: str, read_no: int) -> None:
            work.read(job_id, read_no)

        @app.task(name=MERGE, queue=QUEUE)
        def merge(job_id: str) -> None:
            work.merge(job_id)

        @app.task(name=COMPLETE, queue=QUEUE)
        def complete(job_id: str) -> None:
            work.complete(job_id)

        return app

    async def _serve(self, app: App) -> None:
        async with app.open_async():
            self._worker = Worker(app, queues=[QUEUE], name=self.name, concurrency=self.concurrency,
                                  install_signal_handlers=False, fetch_job_polling_interval=1.0,
                                  update_heartbeat_interval=self.worker_settings.heartbeat_seconds,
                                  stalled_worker_timeout=self.worker_settings.lease_seconds)
            if self._stopping.is_set():
                return
            await self._worker.run()

    def _on_signal(self, *_: Any) -> None:
        self._stopping.set()
        worker, loop = self._worker, self._loop
        if worker is not None and loop is not None:
            loop.call_soon_threadsafe(worker.stop)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.leases.register_worker(self.name, self.concurrency)
        log.warning("worker %s started: %d batches at once, leases of %g s, queue %s", self.name, self.concurrency,
                    self.worker_settings.lease_seconds, self.worker_settings.queue_name,
                    extra=event("worker.started", worker=self.name, concurrency=self.concurrency,
                                lease_seconds=self.worker_settings.lease_seconds))
        heartbeat = threading.Thread(target=self._heartbeat, name="memsys-worker-heartbeat", daemon=True)
        heartbeat.start()
        try:
            while not self._stopping.is_set():
                try:
                    self.queue.app()  # the queue's tables exist before the worker asks for work
                    app = self._app()
                    loop = asyncio.new_event_loop()
                    self._loop = loop
                    try:
                        loop.run_until_complete(self._serve(app))
                    finally:
                        self._loop = None
                        self._worker = None
                        loop.close()
                except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - the queue's database away: wait for it
                    log.warning("worker %s: the queue's database %s did not answer (%s); trying again", self.name,
                                self.worker_settings.queue_name, e,
                                extra=event("worker.reconnect", worker=self.name, error=type(e).__name__))
                if not self._stopping.is_set():
                    self.queue.close()
                    time.sleep(_RECONNECT_SECONDS)
        finally:
            self._stopping.set()
            heartbeat.join(timeout=5)
            self.leases.worker_stopped(self.name)
            self.queue.close()
            self.engine.close()
            log.warning("worker %s stopped", self.name, extra=event("worker.stopped", worker=self.name))
        return 0


def ensure_queue(worker_settings: WorkerSettings) -> None:
    """Make the queue's tables (`memsys worker --init`)."""
    queue = JobQueue(worker_settings)
    try:
        ensure_schema(queue.app())
    finally:
        queue.close()
