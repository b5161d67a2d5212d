"""The jobs-and-operations facade the dashboard and the CLI use, one per process, over a
`MemorySystem` (memsys.api), the job store and its runner. Its calls come in groups by
concern: `imports` (spool, preview, start), `jobs` (progress, follow, cancel, resume,
retry, metrics, replica checks), `memories` (search, browse, export, restore, delete),
`knowledge` (knowledge bases, their documents with a status, removing one, remembered
choices), `collections` (re-embed, drop), `cache` (info, check, repair, warm-up, clear), `status`
(store and embedder), `server` (the memsys server, the cluster, Weaviate's problems),
`batch` (the saved batch settings), `tasks`, `audit`, `logs`, `writes` (memories from callers,
batched across them) and `tokens` (API tokens). Each call declares its
`Action` record (role, audit, description) with `@action`, which `memsys.access` checks
per user. Nothing outside `memsys` needs to reach past these calls.
"""
from memsys.audit import AuditAction, AuditRecord
from memsys.store.cluster import ClusterStatus, NodeState
from memsys.store.replication import ReplicationReport
from memsys.embeddings.health import PROBLEMS, CacheHealthReport
from memsys.embeddings.router import WarmupReport
from memsys.engine.api_tokens import ApiTokens
from memsys.engine.cache import Cache, CachePrune, Tasks
from memsys.engine.coalescer import CoalescerStats, QueueFull
from memsys.engine.core import Engine
from memsys.engine.imports import Imports
from memsys.engine.jobs import Jobs
from memsys.engine.knowledge import (DEFAULT_AGENT, DEFAULT_PART, DEFAULT_SOURCE, DOCUMENT_STATES, DocumentStatus,
                                     ImportChoice, Knowledge, KnowledgeBase, find_name, name_key, tidy_name)
from memsys.engine.memories import Collections, Memories
from memsys.engine.records import (
    UPLOAD_ORIGIN,
    CollectionVersion,
    DocumentSummary,
    EmbedderStatus,
    ImportPreview,
    StoreStatus,
    check_settings,
)
from memsys.engine.sources import Sources
from memsys.engine.status import Batch, Server, Status
from memsys.jobs.sources import SavedSource, SyncRecord
from memsys.engine.timings import Timings
from memsys.engine.trail import Audit, Logs
from memsys.engine.workers import Workers, WorkersView
from memsys.engine.writes import WriteResult, Writes
from memsys.jobs.api_tokens import ApiToken
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import (MAPPED_FIELDS, OLD_OFFICE_TYPES, UPLOAD_CAPTION, UPLOAD_TYPES, FieldMapping, InputProblem,
                                   save_as_advice)
from memsys.jobs import FAILED_PAGE, FailedItem, FileState, JobProgress, failed_row
from memsys.logs import LogLine, LogQuery
from memsys.jobs.job_timings import FailureGroup
from memsys.jobs.metrics import BatchMetrics, BatchRecord, JobTimings, MeasuredSpeed
from memsys.models import Memory
from memsys.store.server import ServerState, ServerStatus
from memsys.space import SpaceReport
from memsys.store import SEARCH_MODES, BrowsePage, MemoryFilter, StoredMemory
from memsys.tasks import Progress, TaskStatus
from memsys.store.server_log import WeaviateProblem
from memsys.store.terms import query_terms, term_spans

# The engine, its groups of calls, and the types those take and return, importable from
# here: the dashboard imports nothing else of memsys but `memsys.access`, `memsys.config`,
# `memsys.errors` and `memsys.units`.
__all__ = [
    "MAPPED_FIELDS", "PROBLEMS", "UPLOAD_CAPTION", "UPLOAD_ORIGIN", "UPLOAD_TYPES", "AuditAction", "AuditRecord",
    "BatchMetrics", "BatchRecord", "BrowsePage", "CacheHealthReport", "ClusterStatus", "CollectionVersion",
    "DocumentSummary", "EmbedderStatus", "Engine", "FAILED_PAGE", "FailedItem", "FieldMapping", "FileState", "ImportPreview",
    "InputProblem", "JobProgress", "LogLine", "LogQuery", "Memory", "MemoryDefaults", "MemoryFilter", "NodeState",
    "Progress", "ReplicationReport", "SEARCH_MODES", "ServerState", "ServerStatus", "SpaceReport", "StoreStatus", "StoredMemory",
    "TaskStatus", "WarmupReport", "WeaviateProblem", "check_settings", "failed_row", "query_terms", "term_spans", "OLD_OFFICE_TYPES",
    "save_as_advice",
    "FailureGroup", "JobTimings", "MeasuredSpeed",
    "Audit", "Batch", "Cache", "CachePrune", "Collections", "Imports", "Jobs", "Logs", "Memories", "Server", "Status", "Tasks",
    "SavedSource", "Sources", "SyncRecord",
    "DEFAULT_AGENT", "DEFAULT_PART", "DEFAULT_SOURCE", "DOCUMENT_STATES", "DocumentStatus", "ImportChoice", "Knowledge",
    "KnowledgeBase", "find_name", "name_key", "tidy_name",
    "ApiToken", "ApiTokens", "CoalescerStats", "QueueFull", "WriteResult", "Writes",
    "Timings",
    "Workers", "WorkersView",
]
