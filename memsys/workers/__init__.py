"""`memsys worker`: jobs run by worker processes on any machine that reaches the job
database, Weaviate and the embedders, through procrastinate's queue in PostgreSQL.

Layers, each importing only those below it:
  process    one worker process: procrastinate's worker, its heartbeat, reconnecting
  work       what a worker does: plan a job (its files read a part per worker, merged in
             order) into batch leases, run a batch fenced, complete
  queue | runner | reads   handing work out (procrastinate); the runner of a process whose
             jobs go to workers; leases on parts of a job's files and what their readers stored
  leases     batch leases with fencing tokens, workers, document claims (job database tables)
  settings   MEMSYS_QUEUE_URL, MEMSYS_WORKER_CONCURRENCY, MEMSYS_LEASE_SECONDS
"""
from __future__ import annotations

from memsys.lazy import lazy_exports

# procrastinate and psycopg are imported only by a process whose jobs go to workers.
__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "memsys.workers.process": ("WorkerProcess",),
    "memsys.workers.queue": ("JobQueue",),
    "memsys.workers.runner": ("QueueRunner",),
    "memsys.workers.leases": ("LeaseTables", "WorkerRow"),
    "memsys.workers.settings": ("WorkerSettings",),
})
