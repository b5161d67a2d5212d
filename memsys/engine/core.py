"""`Engine`: one per process, the resources its groups of calls share (the memory system,
the job store and runner, the audit trail, the spool, the task runner) and the groups."""
from __future__ import annotations

from memsys.access import CallGroup
from memsys.api import MemorySystem
from memsys.audit import AuditTrail
from memsys.config import Settings
from memsys.engine.api_tokens import ApiTokens
from memsys.engine.backups import Backups
from memsys.engine.cache import Cache, Tasks
from memsys.engine.coalescer import WriteCoalescer
from memsys.engine.imports import Imports
from memsys.engine.jobs import Jobs
from memsys.engine.knowledge import Knowledge
from memsys.engine.memories import Collections, Memories
from memsys.engine.retention import Retention
from memsys.engine.sources import Sources
from memsys.engine.status import Batch, Server, Status
from memsys.engine.timings import Timings
from memsys.engine.trail import Audit, Logs
from memsys.engine.workers import Workers
from memsys.engine.writes import Writes
from memsys.errors import JobStoreError
from memsys.jobs import JobRunner, JobStore
from memsys.jobs.api_tokens import ApiTokenTables
from memsys.logs import configure_logging, event, get_logger, set_program
from memsys.jobs.pipeline import ImportPipeline
from memsys.jobs.sources import SourceTables
from memsys.lazy import lazy_names
from memsys.spool import Spool
from memsys.tasks import TaskRunner
from memsys import workers as worker_queue
from memsys.workers.reads import ReadLeases
from memsys.workers.runner import QueueRunner
from memsys.workers.settings import WorkerSettings

# boto3, loaded only when the spool has a bucket (MEMSYS_SPOOL_BACKEND=s3).
Bucket, = lazy_names("memsys.bucket", "Bucket")

log = get_logger("engine")


class Engine:
    """One per process. Thread-safe; `close()` stops the Weaviate connection. Its calls
    come in groups (`engine.imports.start(...)`, `engine.jobs.follow(...)`), each call
    with its `Action` record, so `AuthorizedEngine` checks them one by one."""

    status = CallGroup(Status)
    batch = CallGroup(Batch)
    server = CallGroup(Server)
    imports = CallGroup(Imports)
    jobs = CallGroup(Jobs)
    memories = CallGroup(Memories)
    knowledge = CallGroup(Knowledge)
    collections = CallGroup(Collections)
    cache = CallGroup(Cache)
    tasks = CallGroup(Tasks)
    audit = CallGroup(Audit)
    logs = CallGroup(Logs)
    sources = CallGroup(Sources)
    writes = CallGroup(Writes)
    tokens = CallGroup(ApiTokens)
    timings = CallGroup(Timings)
    backups = CallGroup(Backups)
    retention = CallGroup(Retention)
    workers = CallGroup(Workers)

    def __init__(self, settings: Settings | None = None, system: MemorySystem | None = None, *,
                 program: str | None = None, worker_settings: WorkerSettings | None = None) -> None:
        if program:
            set_program(program)  # "dashboard", "cli": named in log lines and default audit actors
        self.settings = settings or (system.settings if system else Settings.load())
        self.system = system or MemorySystem(self.settings)
        configure_logging(self.settings)
        self.job_store = JobStore(self.settings.job_database, timeout=self.settings.jobs_db_timeout)
        self.audit_trail = AuditTrail(self.settings.job_database, timeout=self.settings.jobs_db_timeout)
        self.source_store = SourceTables(self.settings.job_database, timeout=self.settings.jobs_db_timeout)
        self.spool = Spool(self.settings.spool_dir,
                           Bucket.for_spool(self.settings) if self.settings.spool_backend == "s3" else None)
        self.pipeline = ImportPipeline(self.system, self.job_store)
        # With a queue configured (MEMSYS_QUEUE_URL), jobs go to `memsys worker` processes;
        # without one, this process runs them (the embedded default).
        self.worker_settings = worker_settings or WorkerSettings.load()
        self.worker_leases = ReadLeases(self.settings.job_database, timeout=self.settings.jobs_db_timeout)
        self.runner: JobRunner | QueueRunner
        if self.worker_settings.enabled:
            self.runner = QueueRunner(self.job_store, self.worker_leases, worker_queue.JobQueue(self.worker_settings),
                                      self.spool, after_submit=lambda: self.retention.after_job())
        else:
            self.runner = JobRunner(self.job_store, self._run_job)
        self.task_runner = TaskRunner()
        self.write_queue = WriteCoalescer(self.system, self.settings.api_batch_window_ms, self.settings.api_queue_limit,
                                          self.audit_trail)
        self.api_tokens = ApiTokenTables(self.settings.job_database, timeout=self.settings.jobs_db_timeout)

    def _run_job(self, job_id: str) -> None:
        try:
            self.pipeline.run(job_id)  # an import or a re-embed, as the job's request says
            # Retention runs here, when a job ends, in the process that ran it (the memsys
            # server's supervisor runs only Weaviate): spooled files of settled jobs, old texts.
            try:
                self.retention.after_job()
                self.cache.after_job()
            except (JobStoreError, OSError) as e:  # the job is done; the next job's end tries again
                log.warning("retention after job %s failed: %s", job_id, e, extra=event("retention.failed", job_id=job_id))
        finally:
            # The runner thread lives as long as the process: between jobs it holds no
            # connection to the cache, so closing the engine leaves no file open.
            self.system.router.close()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, program: str | None = None) -> "Engine":
        return cls(settings, program=program)

    def close(self) -> None:
        self.write_queue.close()  # what callers are waiting for is written first
        self.api_tokens.close()
        self.system.close()
        self.job_store.close()
        self.audit_trail.close()
        self.source_store.close()
        self.worker_leases.close()
        if isinstance(self.runner, QueueRunner):
            self.runner.queue.close()
