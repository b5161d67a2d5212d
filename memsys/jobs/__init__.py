"""Jobs: long work (an import of files, a re-embed) that is planned into the job database
before it runs, so it can be listed, followed, cancelled and resumed after any stop.

Layers, each importing only those below it:
  pipeline              runs a job of any kind in batches
  imports | reembed | batches   the kinds of job; one batch from lookup to record
  kinds                 the pipeline's extension point: what a kind of job gives it
  runner | batching | request
  database              the job database: jobs and their state
  job_items | job_documents | job_knowledge | job_stages | job_timings   its items and batches,
                        the documents jobs read, knowledge bases and remembered choices,
                        where the items in flight are, where their time went
  schema                its tables, on SQLite or PostgreSQL
  connection | migrations   the SQLite file; the schema as numbered migrations
  postgres | records | metrics

This package exports the job database, its records and the runner; the pipeline and the
kinds are imported from their modules.
"""
from __future__ import annotations

from memsys.jobs.batching import iter_chunks
from memsys.jobs.database import JobStore
from memsys.jobs.job_stages import FileState
from memsys.jobs.records import (
    FAILED_PAGE,
    FailedItem,
    ItemOutcome,
    JobDocument,
    JobProgress,
    PendingItem,
    PlannedItem,
    failed_row,
)
from memsys.jobs.runner import JobRunner

__all__ = [
    "FAILED_PAGE", "FailedItem", "FileState", "ItemOutcome", "JobDocument", "JobProgress", "JobRunner", "JobStore", "PendingItem",
    "PlannedItem",
    "failed_row", "iter_chunks",
]
