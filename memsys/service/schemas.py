"""The shapes the HTTP API takes and returns (its OpenAPI description is built from them),
and the conversions from the engine's records. Nothing here names a path on the server."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memsys.engine import DocumentSummary, JobProgress, SavedSource, StoredMemory, SyncRecord, WriteResult


class MemoryIn(BaseModel):
    """One memory as an agent writes it (the guide's `write_memory`)."""

    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="The text of the memory.")
    project: str = Field(description="The knowledge base's project.")
    repo: str = Field(description="The knowledge base's repository (or any second name).")
    agent: str = Field(description="Who wrote it: the agent's name.")
    tags: list[str] = Field(default_factory=list)
    source: str = Field(default="agent", description="Where it came from (default: agent).")
    source_file: str = ""
    source_location: str = ""


class BatchIn(BaseModel):
    memories: list[dict[str, Any]] = Field(
        description="Memory records as `POST /v1/memories` takes them. Each is checked on its own: a bad one is "
                    "answered as failed with its index, field and problem, and the rest are written.",
        max_length=10_000)


class WriteOut(BaseModel):
    index: int
    uuid: str
    status: Literal["written", "updated", "unchanged", "failed"]
    error: str = ""


class BatchOut(BaseModel):
    results: list[WriteOut]
    written: int
    failed: int


class Filter(BaseModel):
    """Which memories: every given field must match; tags match any of the given tags."""

    model_config = ConfigDict(extra="forbid")
    project: str | None = None
    repo: str | None = None
    agent: str | None = None
    tags: list[str] | None = None
    source: str | None = None
    source_file: str | None = None
    document_id: str | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    mode: Literal["hybrid", "vector", "keyword"] = Field(
        default="hybrid", description="hybrid: meaning and keywords; vector: meaning only; keyword: BM25 only.")
    limit: int = Field(default=10, ge=1, le=1000)
    alpha: float = Field(default=0.5, ge=0, le=1, description="In hybrid: 1 = meaning only, 0 = keywords only.")
    filter: Filter = Field(default_factory=Filter)


class MemoryOut(BaseModel):
    uuid: str
    content: str
    project: str
    repo: str
    agent: str
    tags: list[str]
    source: str
    source_file: str
    source_location: str
    document_id: str
    created_at: dt.datetime | None
    score: float | None = None
    matched_by: str = ""


class SearchOut(BaseModel):
    hits: list[MemoryOut]


class BrowseOut(BaseModel):
    memories: list[MemoryOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class DeleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: Filter
    dry_run: bool = Field(default=True, description="Only count what would be deleted (the default).")


class DeleteOut(BaseModel):
    count: int
    dry_run: bool


class KnowledgeBaseOut(BaseModel):
    project: str
    repo: str
    documents: int
    memories: int


class DocumentOut(BaseModel):
    document_id: str
    project: str
    repo: str
    source_file: str
    memories: int
    last_job_id: str
    last_imported_at: dt.datetime | None


class UploadOut(BaseModel):
    upload_id: str


class UploadedFileOut(BaseModel):
    upload_id: str
    name: str
    bytes: int


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(description="The upload whose files to import (`POST /v1/uploads`).")
    project: str
    repo: str
    agent: str = "import"
    tags: list[str] = Field(default_factory=list)
    source: str = "import"
    label: str = ""


class JobOut(BaseModel):
    job_id: str
    state: str
    label: str
    project: str
    repo: str
    total: int
    processed: int
    written: int
    updated: int
    unchanged: int
    failed: int
    removed: int
    cache_hits: int
    cache_misses: int
    items_per_second: float
    eta_seconds: float | None
    error: str
    started_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


class FailedItemOut(BaseModel):
    item: str
    reason: str
    error_type: str
    retryable: bool


class RetryOut(BaseModel):
    job_id: str
    retrying: int = Field(description="How many failed memories are being tried again.")


class CacheCheckIn(BaseModel):
    fix: bool = Field(default=False, description="Remove or repair entries that cannot be trusted (admin).")


class DifyRetrievalSetting(BaseModel):
    top_k: int = Field(ge=1, le=1000)
    score_threshold: float = Field(default=0.0, ge=0, le=1)


class DifyCondition(BaseModel):
    name: str | list[str]
    comparison_operator: str
    value: str | int | float | list[str] | None = None


class DifyMetadataCondition(BaseModel):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[DifyCondition] = Field(default_factory=list)


class DifyRetrievalIn(BaseModel):
    """Dify's External Knowledge API request."""

    knowledge_id: str = Field(description="The knowledge base: its project name.")
    query: str
    retrieval_setting: DifyRetrievalSetting
    metadata_condition: DifyMetadataCondition | None = None


class DifyRecord(BaseModel):
    content: str
    score: float
    title: str
    metadata: dict[str, Any]


class DifyRetrievalOut(BaseModel):
    records: list[DifyRecord]


class DifyError(BaseModel):
    error_code: int
    error_msg: str


class ErrorOut(BaseModel):
    detail: str


def memory_out(m: StoredMemory) -> MemoryOut:
    return MemoryOut(uuid=m.uuid, content=m.content, project=m.project, repo=m.repo, agent=m.agent, tags=list(m.tags),
                     source=m.source, source_file=m.source_file, source_location=m.source_location,
                     document_id=m.document_id, created_at=m.created_at, score=m.score, matched_by=m.matched_by)


def write_out(r: WriteResult) -> WriteOut:
    return WriteOut(index=r.index, uuid=r.uuid, status=r.status, error=r.error)  # type: ignore[arg-type]


def _time(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.timezone.utc)


class SourceOut(BaseModel):
    """A saved source (never its credential): where a knowledge base's documents come from."""

    name: str
    kind: str
    location: str
    project: str
    repo: str
    schedule: str
    paused: bool
    last_sync_at: dt.datetime | None
    last_success_at: dt.datetime | None
    next_due_at: dt.datetime | None
    failures: int
    last_error: str


class SyncOut(BaseModel):
    """One sync of a source: how it ended, its documents' counts, its import (follow it at
    /v1/imports/{job_id}) and why it failed."""

    sync_id: str
    trigger: str
    state: str
    job_id: str
    listed: int
    new: int
    changed: int
    unchanged: int
    removed: int
    failed: int
    error: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class SyncStartedOut(BaseModel):
    source: str
    detail: str


def source_out(source: SavedSource) -> SourceOut:
    return SourceOut(name=source.name, kind=source.kind, location=source.location, project=source.defaults.project,
                     repo=source.defaults.repo, schedule=source.schedule, paused=source.paused,
                     last_sync_at=_time(source.last_sync_at), last_success_at=_time(source.last_success_at),
                     next_due_at=_time(source.next_due_at), failures=source.failures, last_error=source.last_error)


def sync_out(sync: SyncRecord) -> SyncOut:
    return SyncOut(sync_id=sync.id, trigger=sync.trigger, state=sync.state, job_id=sync.job_id, listed=sync.listed,
                   new=sync.new, changed=sync.changed, unchanged=sync.unchanged, removed=sync.removed,
                   failed=sync.failed, error=sync.error, started_at=_time(sync.started_at),  # type: ignore[arg-type]
                   finished_at=_time(sync.finished_at))


def job_out(job: JobProgress) -> JobOut:
    """A job without what its request holds on the server (spool paths)."""
    request = job.request or {}
    defaults = request.get("defaults") or {}
    return JobOut(job_id=job.job_id, state=job.state, label=str(request.get("label", "")),
                  project=str(defaults.get("project", "")), repo=str(defaults.get("repo", "")), total=job.total,
                  processed=job.processed, written=job.written, updated=job.updated, unchanged=job.unchanged,
                  failed=job.failed, removed=job.removed, cache_hits=job.cache_hits, cache_misses=job.cache_misses,
                  items_per_second=job.items_per_second, eta_seconds=job.eta_seconds, error=job.error,
                  started_by=str(request.get("started_by", "")), created_at=_time(job.created_at),  # type: ignore[arg-type]
                  finished_at=_time(job.finished_at))


def document_out(d: DocumentSummary) -> DocumentOut:
    return DocumentOut(document_id=d.document_id, project=d.project, repo=d.repo, source_file=d.source_file,
                       memories=d.memories, last_job_id=d.last_job_id, last_imported_at=_time(d.last_imported_at))

