"""The jobs-and-operations facade the dashboard and the CLI use, one per process, over a
`MemorySystem` (memsys.api), the job store and its runner. Its calls come in groups by
concern: `imports` (spool, preview, start), `jobs` (progress, follow, cancel, resume,
retry, metrics, replica checks), `memories` (search, browse, export, restore, delete),
`collections` (re-embed, drop), `cache` (info, check, repair, warm-up, clear), `status`
(store and embedder), `server` (the memsys server, the cluster, Weaviate's problems),
`batch` (the saved batch settings), `tasks`, `audit` and `logs`. Each call declares its
`Action` record (role, audit, description) with `@action`, which `memsys.access` checks
per user. Nothing outside `memsys` needs to reach past these calls.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from memsys.access import Group, Role, action, action_table
from memsys.api import HYBRID_ALPHA, MemorySystem, check_embedder, describe_embedder, embedder_record, same_embedder
from memsys.cluster import ClusterStatus, NodeState, ReplicationReport, cluster_status, verify_replication
from memsys.audit import AuditAction, AuditOutcome, AuditRecord, AuditTrail
from memsys.config import BatchConfig, Settings, redact_url
from memsys.errors import StoreUnavailableError
from memsys.embeddings.endpoints import EndpointPool, EndpointStatus
from memsys.embeddings.health import PROBLEMS, CacheHealthReport
from memsys.embeddings.providers import provider_from_settings
from memsys.embeddings.router import WarmupReport
from memsys.embeddings.warmup import read_warmup_texts
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.documents import FieldMapping, MemoryDefaults, iter_memories
from memsys.ingest.readers import (
    MAPPED_FIELDS,
    OCR_SECONDS_PER_PAGE,
    UPLOAD_CAPTION,
    UPLOAD_TYPES,
    InputProblem,
    ReadTally,
    has_columns,
    structured_columns,
)
from memsys.jobs import FAILED_PAGE, FailedItem, JobProgress, JobRunner, JobStore, failed_row, iter_chunks
from memsys.logs import (
    LogLine,
    LogQuery,
    configure_logging,
    default_actor,
    event,
    follow_logs,
    get_logger,
    log_position,
    read_logs,
    set_program,
)
from memsys.metrics import BatchMetrics, BatchRecord
from memsys.models import Memory
from memsys import server
from memsys.pipeline import ImportPipeline, ImportRequest, embedder_name, ocr_settings, plan_sizes, read_limits
from memsys.server import ServerState, ServerStatus
from memsys.reembed import ReembedPipeline
from memsys.store import SEARCH_MODES, BrowsePage, MemoryFilter, StoredMemory, export_record, parse_export_line
from memsys.weaviate_log import WeaviateProblem, weaviate_problems
from memsys.spool import Spool
from memsys.tasks import Progress, TaskProgress, TaskRunner, TaskStatus

# The types the engine's calls take and return, importable from here: the dashboard imports
# nothing else of memsys but `memsys.access`, `memsys.config`, `memsys.errors` and `memsys.units`.
__all__ = [
    "MAPPED_FIELDS", "PROBLEMS", "UPLOAD_CAPTION", "UPLOAD_ORIGIN", "UPLOAD_TYPES", "AuditAction", "AuditRecord",
    "BatchMetrics", "BatchRecord", "BrowsePage", "CacheHealthReport", "ClusterStatus", "CollectionVersion",
    "DocumentSummary", "EmbedderStatus", "Engine", "FAILED_PAGE", "FailedItem", "FieldMapping", "ImportPreview",
    "InputProblem", "JobProgress", "LogLine", "LogQuery", "Memory", "MemoryDefaults", "MemoryFilter", "NodeState",
    "Progress", "ReplicationReport", "SEARCH_MODES", "ServerState", "ServerStatus", "StoreStatus", "StoredMemory",
    "TaskStatus", "WarmupReport", "WeaviateProblem", "check_settings", "failed_row",
]
log = get_logger("engine")
ProgressCallback = Callable[[JobProgress], None]


def check_settings(settings: Settings) -> None:
    """Raise ConfigError naming the setting when these settings cannot work (an embedding
    provider that cannot start, such as openai without a key or a server)."""
    provider_from_settings(settings)


@dataclass
class ImportPreview:
    """What an import would do, before it runs: a sample of its memories, every problem
    found, the batch plan and what the provider would be asked (cache hits are free)."""

    sample: list[Memory] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    memories: int = 0
    distinct: int = 0
    cached: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    provider_calls: int = 0
    tokens: int = 0
    estimated_cost_usd: float = 0.0
    price_per_million_tokens: float = 0.0
    # Scanned pages the import will read by OCR; the preview counts them without reading
    # them, so their memories are not in `memories` yet.
    ocr_pages: int = 0
    # With a mirror's origin: the documents earlier imports of it had and these files no
    # longer have (removed when a mirror import completes), and their stored memories.
    mirror_documents: int = 0
    mirror_memories: int = 0

    @property
    def ocr_seconds(self) -> float:
        """About how long reading the scanned pages will take."""
        return self.ocr_pages * OCR_SECONDS_PER_PAGE

    @property
    def to_embed(self) -> int:
        return self.distinct - self.cached


@dataclass(frozen=True)
class DocumentSummary:
    """A stored document: where it came from, how many memories it has, its last import."""

    document_id: str
    project: str
    repo: str
    source_file: str
    memories: int
    last_job_id: str = ""
    last_imported_at: float | None = None


# An origin naming an upload ("upload:guide.zip") rather than a path on this machine: the
# dashboard's files land in a new spool folder each time, so their names are what repeats.
UPLOAD_ORIGIN = "upload:"


def origin_key(origin: Sequence[Path | str], defaults: MemoryDefaults) -> str:
    """What makes two imports "the same folder" for a mirror: the resolved paths given
    (or the uploads' names), under the same project and repo."""
    paths = sorted(str(p) if str(p).startswith(UPLOAD_ORIGIN) else str(Path(p).resolve()) for p in origin)
    return json.dumps([defaults.project, defaults.repo, paths], ensure_ascii=False)


@dataclass(frozen=True)
class CollectionVersion:
    """One physical collection of the store: whether search uses it now (`live`), how many
    memories it holds and which embedder made its vectors."""

    name: str
    live: bool
    memories: int
    embedder: str


@dataclass(frozen=True)
class StoreStatus:
    """Which Weaviate memsys talks to and how many memories its collection holds."""

    mode: str  # embedded | server | cloud
    version: str
    collection: str
    memories: int


@dataclass(frozen=True)
class EmbedderStatus:
    """Which embedder imports and searches use (nothing secret in it)."""

    provider: str
    model: str
    dimensions: int | None
    base_url: str | None
    price_per_million_tokens: float
    max_inputs_per_request: int


VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN


@contextmanager
def audited(trail: AuditTrail, action: AuditAction, actor: str | None, target: str,
            details: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Record `action` once the block ends: done (with what the block added to the
    details), refused (a ValueError: memsys said no) or failed (any other error)."""
    who = actor or default_actor()
    recorded = dict(details or {})
    try:
        yield recorded
    except ValueError as e:
        trail.record(action, who, target=target, outcome=AuditOutcome.REFUSED, details={**recorded, "reason": str(e)})
        raise
    except Exception as e:
        trail.record(action, who, target=target, outcome=AuditOutcome.FAILED,
                     details={**recorded, "reason": f"{type(e).__name__}: {e}"})
        raise
    trail.record(action, who, target=target, details=recorded)


class _Calls:
    """One group of the engine's calls; every public call carries its `@action` record."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine


class Status(_Calls):
    """Which Weaviate and which embedder memsys uses, and whether both answer."""

    @action(VIEWER, "reading the store's status")
    def store(self) -> StoreStatus:
        """Connects (embedded Weaviate starts on first use) and counts the memories."""
        info = self._engine.system.store.server_info()
        return StoreStatus(info["mode"], str(info["version"] or "?"), info["collection"], int(info["objects"]))

    @action(VIEWER, "reading the embedder's status")
    def embedder(self) -> EmbedderStatus:
        provider = self._engine.system.router.provider
        return EmbedderStatus(
            provider=provider.name,
            model=provider.model,
            dimensions=provider.dimensions,
            base_url=redact_url(provider.base_url),
            price_per_million_tokens=provider.price_per_million_tokens,
            max_inputs_per_request=provider.max_inputs_per_request,
        )

    # An admin's: it spends a real embedding call, bypassing the cache.
    @action(ADMIN, "checking the connections")
    def check_connections(self) -> StoreStatus:
        """Reach Weaviate and make one real embedding call (no cache); raises what fails."""
        status = self.store()
        self._engine.system.router.embed(["connection check"], kind="query", use_cache=False)
        return status

    @action(OPERATOR, "checking the embedding endpoints")
    def check_endpoints(self) -> list[EndpointStatus]:
        """Check that every configured embedding endpoint serves the same model (raises
        EmbeddingModelMismatchError naming the one that does not); returns each endpoint's
        state. With the local embedder or a single endpoint there is nothing to compare."""
        provider = self._engine.system.router.provider
        provider.verify()
        return provider.endpoint_status() if isinstance(provider, EndpointPool) else []


class Batch(_Calls):
    """The saved batch settings new imports start from."""

    @property
    @action(VIEWER, "reading the batch settings")
    def path(self) -> Path:
        return self._engine.settings.batch_config_path

    @action(VIEWER, "reading the batch settings")
    def saved(self) -> BatchConfig:
        """The saved batch settings new imports start from; BatchConfig's defaults when
        none are saved. A saved file that no longer loads raises ConfigError naming the
        problem."""
        return BatchConfig.saved(self.path)

    @action(ADMIN, "saving batch settings")
    def save(self, config: BatchConfig) -> Path:
        """Save as the batch settings new imports (and MemorySystem's writes) start from."""
        config.validate()
        config.to_file(self.path)
        self._engine.system.batch_config = config
        return self.path


class Server(_Calls):
    """The memsys server (embedded Weaviate of this data directory) and the cluster."""

    # Starting or stopping the shared server affects every user of the data directory.
    @action(ADMIN, "starting the memsys server", audit=AuditAction.SERVER_STARTED)
    def start(self, *, actor: str | None = None) -> tuple[ServerState, bool]:
        """Start this data directory's server in the background (it outlives this
        process); returns its state and whether this call started it. A start is recorded
        in the audit trail (a server that was already running is not)."""
        engine = self._engine
        self._require_embedded("start")
        state, started = server.ensure_server(engine.settings)
        if started:
            engine.audit_trail.record(AuditAction.SERVER_STARTED, actor or default_actor(), target=str(state.data_dir),
                                      details={"pid": state.pid, "url": state.url})
        return state, started

    @action(ADMIN, "stopping the memsys server", audit=AuditAction.SERVER_STOPPED)
    def stop(self, *, actor: str | None = None) -> ServerState | None:
        """Stop this data directory's server cleanly; returns what was stopped, if any. A
        stop is recorded in the audit trail (asking to stop a stopped server is not)."""
        engine = self._engine
        self._require_embedded("stop")
        state = server.stop_server(engine.settings)
        if state is not None:
            engine.audit_trail.record(AuditAction.SERVER_STOPPED, actor or default_actor(), target=str(state.data_dir),
                                      details={"pid": state.pid, "ran_seconds": round(time.time() - state.started_at, 1)})
        return state

    @action(VIEWER, "reading the server's status")
    def status(self, count_objects: bool = True) -> ServerStatus:
        """Running or not, where, since when, memory, objects, clients. Starts nothing."""
        return server.server_status(self._engine.settings, count_objects=count_objects)

    @action(VIEWER, "reading the cluster's status")
    def cluster(self) -> ClusterStatus:
        """Weaviate's nodes (down ones marked), shards, replication and consistency levels."""
        return cluster_status(self._engine.system.store)

    @action(VIEWER, "reading Weaviate's problems")
    def problems(self, since: dt.datetime | None = None, limit: int = 5) -> list[WeaviateProblem]:
        """What embedded Weaviate's own log reports that an operator must know (disk or
        memory pressure, a failed start, errors), newest last; by default the last day's."""
        settings = self._engine.settings
        if settings.weaviate_mode != "embedded":
            return []  # a server memsys does not run keeps its own log
        since = since or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        return weaviate_problems(server.log_file(settings), since=since, limit=limit)

    def _require_embedded(self, action: str) -> None:
        url = self._engine.settings.weaviate_url
        if url:
            raise ValueError(f"Weaviate is the server at {url}; memsys does not {action} that one")


class Imports(_Calls):
    """Files into the spool, a preview of what an import would do, and starting one."""

    @action(OPERATOR, "uploading files")
    def spool_upload(self, upload_id: str, name: str, data: BinaryIO) -> Path:
        """Copy one uploaded file into the spool now (streamed, not held in memory). A name
        with '..' or an absolute path raises UnsafeNameError: nothing lands outside the spool."""
        return self._engine.spool.save_upload(upload_id, name, data)

    @action(OPERATOR, "copying files in for an import")
    def spool_paths(self, paths: Sequence[Path | str]) -> list[Path]:
        """Copy files and folders into a new spool folder; returns the copies."""
        return self._engine.spool.copy_in(paths)

    @staticmethod
    @action(VIEWER, "reading a file's columns")
    def is_structured(path: Path) -> bool:
        """True for files read as records (csv, tsv, jsonl), whose columns can be mapped."""
        return has_columns(Path(path))

    @staticmethod
    @action(VIEWER, "reading a file's columns")
    def columns_in(path: Path) -> list[str]:
        """The column names a structured file offers for mapping ([] when none can be read)."""
        return structured_columns(Path(path))

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def create(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        label: str = "",
        started_by: str = "",
        origin: Sequence[Path | str] = (),
        mirror: bool = False,
    ) -> str:
        """Record an import job for already-spooled paths; returns its id. Without a
        `config` the job uses the saved batch settings. `origin` names what was imported
        (the folders and files as the user gave them); with `mirror`, documents an earlier
        import of the same origin had and this one does not are removed when it completes."""
        if mirror and not origin:
            raise ValueError("a mirror import needs its origin: the folders or files it mirrors")
        engine = self._engine
        provider = engine.system.router.provider
        request = ImportRequest(
            paths=tuple(str(Path(p).resolve()) for p in paths),
            defaults=defaults,
            mapping=mapping,
            chunking=chunking,
            config=config or engine.batch.saved(),
            label=label or ", ".join(Path(p).name for p in paths)[:120],
            embedder=provider.fingerprint,
            embedder_name=embedder_name(provider),
            started_by=started_by,
            origin=origin_key(origin, defaults) if origin else "",
            mirror=mirror,
        )
        return engine.job_store.create_job(request.to_json())

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def start(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        label: str = "",
        started_by: str = "",
        origin: Sequence[Path | str] = (),
        mirror: bool = False,
        actor: str | None = None,
    ) -> str:
        """Create an import job for spooled paths and run it in the background (recorded
        in the audit trail as started by `actor`, else `started_by`)."""
        job_id = self.create(paths, defaults, mapping=mapping, chunking=chunking, config=config, label=label,
                             started_by=started_by, origin=origin, mirror=mirror)
        self.record_started(job_id, actor=actor or started_by or None)
        self._engine.runner.submit(job_id)
        return job_id

    @action(OPERATOR, "starting an import", audit=AuditAction.IMPORT_STARTED)
    def record_started(self, job_id: str, *, actor: str | None = None) -> AuditRecord:
        """Record who started an import (the CLI creates its job and runs it itself)."""
        request = self._engine.job_store.request(job_id)
        return self._engine.audit_trail.record(AuditAction.IMPORT_STARTED, actor or default_actor(), target=job_id, details={
            "label": request.get("label", ""), "files": [Path(p).name for p in request.get("paths", [])],
            "project": (request.get("defaults") or {}).get("project", ""),
        })

    @action(OPERATOR, "previewing an import")
    def preview(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        limit: int = 20,
        origin: Sequence[Path | str] = (),
        cancelled: Callable[[], bool] | None = None,
    ) -> ImportPreview:
        """Read the files as an import would and say what it would do; nothing is written.
        With `origin` (as a mirror import would be given it), also how many documents and
        memories a mirror import would remove. `cancelled` is asked while each file is
        read; when it says yes, ReadCancelled is raised within a quarter second, even
        inside a large file."""
        engine = self._engine
        config = config or engine.batch.saved()
        router = engine.system.router
        provider = router.provider
        preview = ImportPreview(price_per_million_tokens=provider.price_per_million_tokens)
        tally = ReadTally()
        pieces = iter_memories([Path(p) for p in paths], defaults, mapping=mapping, chunking=chunking,
                               limits=read_limits(engine.settings),
                               provider=provider.name, model=provider.model,
                               ocr=ocr_settings(engine.settings), tally=tally, estimate_only=True, cancelled=cancelled)
        seen: set[str] = set()
        documents: set[str] = set()
        for chunk in iter_chunks(pieces, 1000):
            new_texts = []
            for piece in chunk:
                if isinstance(piece, InputProblem):
                    preview.problems.append(piece)
                    continue
                documents.add(piece.document_id)
                preview.memories += 1
                if len(preview.sample) < limit:
                    preview.sample.append(piece)
                if piece.content not in seen:
                    seen.add(piece.content)
                    new_texts.append(piece.content)
            preview.distinct += len(new_texts)
            if new_texts:
                cached = router.with_cache_dir(config.resolve_cache_dir(engine.settings.data_dir)).cached_texts(new_texts) \
                    if config.enable_cache else set()
                preview.cached += len(cached)
                preview.tokens += sum(provider.count_tokens(t) for t in new_texts if t not in cached)
            preview.batch_sizes.extend(plan_sizes(new_texts, config, provider.max_inputs_per_request))
        preview.ocr_pages = tally.ocr_pages
        preview.provider_calls = math.ceil(preview.to_embed / provider.max_inputs_per_request) if preview.to_embed else 0
        preview.estimated_cost_usd = preview.tokens / 1e6 * provider.price_per_million_tokens
        if origin:
            gone = engine.job_store.gone_documents(origin_key(origin, defaults), documents)
            preview.mirror_documents = len(gone)
            preview.mirror_memories = sum(engine.system.store.count(MemoryFilter(document_id=d.document_id)) for d in gone)
        return preview

    @action(OPERATOR, "previewing an import")
    def start_preview(self, paths: Sequence[Path | str], defaults: MemoryDefaults, **options: Any) -> str:
        """`preview(paths, defaults, **options)` as a background task, so a page never waits
        on a slow file: poll it with `engine.tasks.get(task_id)` (its result is the
        ImportPreview), stop it with `engine.tasks.cancel` (the read stops inside the file
        it is in)."""
        paths = list(paths)

        def work(progress: TaskProgress) -> ImportPreview:
            return self.preview(paths, defaults, cancelled=progress.cancelled, **options)

        return self._engine.task_runner.submit("preview", work)


class Jobs(_Calls):
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
        """Ask a job to stop after the batch in flight (works across processes); False,
        and the refusal recorded, when the job is not going."""
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


class Memories(_Calls):
    """The stored memories: search, browse, export and restore, count, open, delete."""

    @action(VIEWER, "searching memories")
    def search(self, query: str, limit: int = 10, where: MemoryFilter | None = None, *, mode: str = "hybrid",
               alpha: float = HYBRID_ALPHA) -> list[StoredMemory]:
        """Memories best matching `query`, best first, within the filter: by meaning and
        keywords (`hybrid`), or by one (`vector`, `keyword`); each hit says how it matched."""
        where = where or MemoryFilter()
        return self._engine.system.search_memories(
            query, limit=limit, project=where.project, repo=where.repo, agent=where.agent,
            tags=list(where.tags) if where.tags else None, mode=mode, alpha=alpha,
        )

    @action(VIEWER, "browsing memories")
    def browse(self, where: MemoryFilter | None = None, offset: int = 0, limit: int = 50) -> list[StoredMemory]:
        """Memories matching the filter, newest first, a page at a time."""
        return self._engine.system.store.browse(offset=offset, limit=limit, where=where)

    @action(VIEWER, "browsing memories")
    def browse_page(self, where: MemoryFilter | None = None, after: str | None = None, limit: int = 50) -> BrowsePage:
        """A page of memories in a stable order (by ID) after the cursor `after`, with the
        cursor of the next page: no 10,000-result cap, however large the store."""
        return self._engine.system.store.page_after(after, limit=limit, where=where)

    @action(VIEWER, "exporting memories")
    def export(self, out: TextIO, where: MemoryFilter | None = None, *, vectors: bool = False) -> int:
        """Write the memories matching `where` (all when None) as JSON lines: content and
        every field, when they were created, and with `vectors` their vectors and the
        embedder that made them, so `restore` puts them back without embedding. Returns
        how many."""
        provider = self._engine.system.router.provider
        n = 0
        for memory, vector in self._engine.system.store.scan(where, include_vector=vectors):
            record = export_record(memory)
            if vector is not None:
                record["vector"] = vector
                record["embedder"] = provider.fingerprint
                record["embedder_name"] = embedder_name(provider)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n

    # Writes memories back from an export, as an import would.
    @action(OPERATOR, "restoring memories", audit=AuditAction.MEMORIES_RESTORED)
    def restore(self, lines: Iterable[str], batch: int = 500, *, actor: str | None = None, source: str = "") -> int:
        """Write memories exported by `export` back: each with its vector when the export
        has one (nothing embedded), else embedded now, and with its creation time. A line
        that is not a memory raises ValueError naming its line number; a vector from another
        embedder (or of another length) is refused, so a collection never mixes two
        models. Returns how many memories were written or were already stored as they are.
        A collection whose vectors come from another embedder than the configured one is
        refused first (EmbedderMismatchError), as an import is. The restore is recorded in
        the audit trail with `source` (the file) and the count written, whether it finished
        or stopped at a bad line."""
        system = self._engine.system
        with audited(self._engine.audit_trail, AuditAction.MEMORIES_RESTORED, actor, system.store.collection_name,
                     {"source": source} if source else None) as details:
            check_embedder(system)
            provider = system.router.provider
            pending: list[tuple[Memory, list[float] | None, Any]] = []
            details["count"] = 0
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                memory, vector, created = parse_export_line(line, number, provider.fingerprint, embedder_name(provider))
                pending.append((memory, vector, created))
                if len(pending) >= batch:
                    details["count"] += self._restore_batch(pending)
                    pending = []
            if pending:
                details["count"] += self._restore_batch(pending)
        return int(details["count"])

    def _restore_batch(self, batch: list[tuple[Memory, list[float] | None, Any]]) -> int:
        system = self._engine.system
        missing = [i for i, (_, v, _) in enumerate(batch) if v is None]
        vectors: list[Any] = [v for _, v, _ in batch]
        if missing:
            embedded = system.router.embed([batch[i][0].content for i in missing]).vectors
            for k, i in enumerate(missing):
                vectors[i] = embedded[k]
        outcome = system.store.write([m for m, _, _ in batch], vectors, created_at=[c for _, _, c in batch])
        if outcome.failed:
            first = min(outcome.failed)
            raise StoreUnavailableError(
                f"Weaviate refused {len(outcome.failed)} restored memories, e.g. {batch[first][0].uuid}: {outcome.failed[first]}")
        return len(outcome.written)

    @action(VIEWER, "counting memories")
    def count(self, where: MemoryFilter | None = None) -> int:
        return self._engine.system.store.count(where)

    @action(VIEWER, "opening a memory")
    def get(self, memory_id: str) -> StoredMemory | None:
        return self._engine.system.get_memory(memory_id)

    @action(ADMIN, "deleting memories", audit=AuditAction.MEMORIES_DELETED)
    def delete(self, where: MemoryFilter, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every memory the filter matches (an empty filter is refused); with
        `dry_run`, only count them. Returns how many. The job database and the spool drop
        their content first, so no resume or retry can write them again. A deletion (not a
        dry run) is recorded in the audit trail with the filter and the count."""
        engine = self._engine
        store = engine.system.store
        if dry_run:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            return store.count(where)
        shown = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(where).items() if v}
        with audited(engine.audit_trail, AuditAction.MEMORIES_DELETED, actor, store.collection_name,
                     {"filter": shown}) as details:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            started = time.monotonic()
            deleted = store.delete_matching(where, before_delete=self._forget)
            # Items never stored (failed, pending) go too, or a retry would write them.
            fields = {name: getattr(where, name) for name in ("project", "repo", "agent", "source", "source_file")
                      if getattr(where, name)}
            if fields or where.tags:
                self._forget(engine.job_store.uuids_matching(fields, where.tags or ()))
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    @action(ADMIN, "deleting memories", audit=AuditAction.MEMORIES_DELETED)
    def delete_job(self, job_id: str, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every stored memory an import job's items name, and what the job keeps
        of their content (its items' text, its spooled files). Returns how many memories.
        A deletion (not a dry run) is recorded in the audit trail with the job and the count."""
        engine = self._engine
        jobs, store = engine.job_store, engine.system.store
        job = jobs.require(job_id)
        if dry_run:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            return len(list(store.existing(jobs.job_uuids(job_id))))
        with audited(engine.audit_trail, AuditAction.MEMORIES_DELETED, actor, store.collection_name,
                     {"filter": {"job": job_id}}) as details:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            started = time.monotonic()
            uuids = jobs.job_uuids(job_id)
            stored = list(store.existing(uuids))
            self._forget(uuids)  # the items not stored yet too: a resume must not write them
            deleted = store.delete_ids(stored)
            engine.spool.drop(jobs.request(job_id).get("paths") or [])
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    def _forget(self, uuids: list[str]) -> None:
        """Before memories are deleted: their text leaves the job database, and a spooled
        file leaves the spool once no job item holds text from it any more."""
        engine = self._engine
        sources = engine.job_store.sources_of(uuids)
        engine.job_store.forget(uuids)
        for job_id, source_file in sources:
            if not engine.job_store.keeps_content_of(job_id, source_file):
                engine.spool.drop(engine.job_store.request(job_id).get("paths") or [], source_file)
        # A re-embed copies from a snapshot: what it already wrote goes too, or the switch
        # to its collection would bring the deleted memories back.
        for target in self._unfinished_reembeds():
            engine.system.store.with_collection(target, physical=True).delete_ids(uuids)

    def _unfinished_reembeds(self) -> list[str]:
        """The collections re-embed jobs are filling (running, or stopped to be resumed)."""
        engine = self._engine
        versions = set(engine.system.store.versions())
        targets = {j.request.get("reembed_into") for j in engine.job_store.list_jobs(limit=200) if j.state != "completed"}
        return sorted(t for t in targets if t and t in versions)

    @action(VIEWER, "listing documents")
    def documents(self, where: MemoryFilter | None = None, limit: int = 1000) -> list[DocumentSummary]:
        """The stored documents (within the filter), most memories first: each with its
        memory count and the last import that read it."""
        groups = self._engine.system.store.documents(where, limit=limit)
        last = self._engine.job_store.last_imports([g.document_id for g in groups])
        return [
            DocumentSummary(g.document_id, g.project, g.repo, g.source_file, g.memories,
                            *(last.get(g.document_id) or ("", None)))
            for g in groups
        ]


class Collections(_Calls):
    """The store's physical collections and re-embedding into a new one (memsys/reembed.py)."""

    @action(VIEWER, "listing collections")
    def versions(self) -> list[CollectionVersion]:
        """The store's physical collections, oldest first: the one search uses and the
        ones earlier re-embeds left behind, each with its count and embedder."""
        store = self._engine.system.store
        store.ensure_collection()
        live = store.live_collection()
        out = []
        for name in store.versions():
            recorded = store.recorded_embedder(name)
            out.append(CollectionVersion(name, name == live, store.with_collection(name, physical=True).count(),
                                         describe_embedder(recorded) if recorded else "not recorded"))
        return out

    @action(VIEWER, "reading whether a re-embed is needed")
    def needs_reembed(self) -> str:
        """Why the collection searched now does not match the configured embedder (naming
        both), or "" when it does or does not say (made before memsys recorded it: imports
        go in, and `create_reembed` still rebuilds it, recording the embedder)."""
        system = self._engine.system
        recorded = system.store.recorded_embedder()
        current = embedder_record(system.router.provider)
        if recorded is None or same_embedder(system.router.provider, recorded):
            return ""
        return (f"{system.store.live_collection()} holds vectors of {describe_embedder(recorded)}; the embedder is set to "
                f"{describe_embedder(current)}")

    # A re-embed moves what every search uses: an admin's.
    @action(ADMIN, "re-embedding the memories", audit=AuditAction.REEMBED_STARTED)
    def create_reembed(self, *, config: BatchConfig | None = None, started_by: str = "") -> str:
        """Record a re-embed job: every memory of the collection searched now is embedded
        with the configured embedder into a new collection, which search switches to when
        the job completes. Refused (ValueError) when the collection already matches the
        embedder or another re-embed is under way. Returns the job id."""
        engine = self._engine
        store, provider = engine.system.store, engine.system.router.provider
        store.ensure_collection()
        recorded = store.recorded_embedder()
        if recorded is not None and same_embedder(provider, recorded):
            raise ValueError(f"{store.live_collection()} is already embedded with "
                             f"{describe_embedder(embedder_record(provider))}; there is nothing to re-embed")
        for job in engine.job_store.list_jobs(limit=200):
            if job.is_active and engine.job_store.request(job.job_id).get("reembed_into"):
                raise ValueError(f"re-embed job {job.job_id} is {job.state}; wait for it or cancel it first")
        source, target = store.live_collection(), store.next_version()
        request = ImportRequest(
            paths=(), defaults=MemoryDefaults("re-embed", "re-embed", "re-embed"), config=config or engine.batch.saved(),
            label=f"re-embed {source} into {target} with {embedder_name(provider)}"[:120],
            embedder=provider.fingerprint, embedder_name=embedder_name(provider), started_by=started_by,
            reembed_from=source, reembed_into=target,
        )
        return engine.job_store.create_job(request.to_json())

    @action(ADMIN, "re-embedding the memories", audit=AuditAction.REEMBED_STARTED)
    def start_reembed(self, *, config: BatchConfig | None = None, started_by: str = "",
                      actor: str | None = None) -> str:
        """Create a re-embed job (see `create_reembed`) and run it in the background;
        recorded in the audit trail (a refusal too)."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.REEMBED_STARTED, actor or started_by or None,
                     engine.system.store.live_collection()) as details:
            job_id = self.create_reembed(config=config, started_by=started_by)
            details["job"] = job_id
        engine.runner.submit(job_id)
        return job_id

    # Dropping a collection deletes its memories: an admin's.
    @action(ADMIN, "dropping a collection", audit=AuditAction.COLLECTION_DROPPED)
    def drop(self, name: str, *, actor: str | None = None) -> int:
        """Drop an old collection of the store (one search no longer uses); returns how
        many memories it held. The collection searched now is refused. Recorded in the
        audit trail with the count."""
        with audited(self._engine.audit_trail, AuditAction.COLLECTION_DROPPED, actor, name) as details:
            store = self._engine.system.store
            n = store.with_collection(name, physical=True).count() if name in store.versions() else 0
            store.drop_version(name)
            details["count"] = n
        return n


def _check_role(fix: bool = False, **_: Any) -> Role:
    """A check is an operator's; a repair removes entries and is an admin's."""
    return ADMIN if fix else OPERATOR


class Cache(_Calls):
    """The embedding cache: what it holds, checking and repairing it, warming it up, clearing it."""

    @property
    @action(VIEWER, "reading the cache's folder")
    def directory(self) -> Path:
        return self._engine.system.router.cache_dir

    @action(VIEWER, "reading the cache's figures")
    def info(self) -> dict[str, Any]:
        """Entries, size, lifetime and session hits and misses, limit, policy, per model."""
        return self._engine.system.router.get_cache_info()

    @action(OPERATOR, "this cache action", audit=AuditAction.CACHE_REPAIRED, role_for=_check_role)
    def check(self, fix: bool = False, progress: Progress | None = None, *,
              actor: str | None = None) -> CacheHealthReport:
        """Find (and with `fix`, remove or repair) cache entries that cannot be trusted.
        A repair is recorded in the audit trail with its counts."""
        router = self._engine.system.router
        what = "repair" if fix else "check"
        log.info("cache %s started: %s", what, router.cache_dir,
                 extra=event("cache.check.started", fix=fix, directory=str(router.cache_dir)))
        if not fix:
            report = router.check_cache(fix=False, progress=progress)
        else:
            with audited(self._engine.audit_trail, AuditAction.CACHE_REPAIRED, actor, str(router.cache_dir)) as details:
                report = router.check_cache(fix=True, progress=progress)
                details.update(checked=report.checked, bad=len(report.bad_entries), removed=len(report.removed),
                               rebuilt=report.rebuilt, problems=report.problem_counts())
        log.info("cache %s done in %.1f s: %d checked, %d healthy, %d bad, %d removed", what, report.seconds,
                 report.checked, report.healthy, len(report.bad_entries), len(report.removed),
                 extra=event("cache.check.done", fix=fix, checked=report.checked, healthy=report.healthy,
                             bad=len(report.bad_entries), removed=len(report.removed), seconds=round(report.seconds, 3),
                             problems=report.problem_counts()))
        return report

    @action(OPERATOR, "warming up the cache")
    def warm_up(
        self,
        texts: Iterable[str] = (),
        *,
        files: Sequence[Path] = (),
        progress: Progress | None = None,
        total: int = 0,
    ) -> WarmupReport:
        """Embed and cache texts ahead of an import: `texts`, then the texts of each warm-up
        file (one per line, or .jsonl), streamed a step at a time, never read whole."""
        stream = itertools.chain(texts, *(read_warmup_texts(Path(f)) for f in files))
        log.info("cache warm-up started", extra=event("cache.warmup.started", files=[Path(f).name for f in files]))
        report = self._engine.system.router.warm_up(stream, progress=progress, total=total)
        log.info("cache warm-up done in %.1f s: %d texts, %d already cached, %d embedded", report.seconds, report.texts,
                 report.already_cached, report.embedded,
                 extra=event("cache.warmup.done", texts=report.texts, already_cached=report.already_cached,
                             embedded=report.embedded, seconds=round(report.seconds, 3)))
        return report

    @action(ADMIN, "clearing the cache", audit=AuditAction.CACHE_CLEARED)
    def clear(self, *, actor: str | None = None) -> int:
        """Remove every cached vector; returns how many entries went (recorded)."""
        router = self._engine.system.router
        with audited(self._engine.audit_trail, AuditAction.CACHE_CLEARED, actor, str(router.cache_dir)) as details:
            details["removed"] = router.clear()
        return int(details["removed"])


class Tasks(_Calls):
    """Short background tasks (a preview, a cache check, repair or warm-up from the dashboard)."""

    @action(VIEWER, "starting a task")
    def start(self, name: str, work: Callable[[Progress], Any]) -> str:
        """Run `work(progress)` in the background; poll it with `get(task_id)`."""
        return self._engine.task_runner.submit(name, work)

    @action(VIEWER, "reading a task")
    def get(self, task_id: str) -> TaskStatus | None:
        return self._engine.task_runner.get(task_id)

    @action(OPERATOR, "cancelling a task")
    def cancel(self, task_id: str) -> bool:
        """Ask a background task to stop (a preview stops inside the file it is reading);
        False when it is no longer running."""
        return self._engine.task_runner.cancel(task_id)


class Audit(_Calls):
    """The audit trail: who did what, when, to what, with what outcome. `actor` is who
    acts: the signed-in user, else `default_actor()` (the dashboard, or the OS user of the
    CLI or a script). Refusals are recorded too."""

    @action(ADMIN, "reading the audit trail")
    def records(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
                since: dt.datetime | None = None, limit: int = 500) -> list[AuditRecord]:
        """The newest audit records matching every given field, newest first."""
        return self._engine.audit_trail.records(action=action, actor=actor, target=target, since=since, limit=limit)

    # Settings changes are recorded from the admin's Settings page.
    @action(ADMIN, "changing settings", audit=AuditAction.SETTINGS_CHANGED)
    def record_settings_change(self, changes: Mapping[str, str], *, secret_fields: Sequence[str] = (),
                               actor: str | None = None, refused: str = "") -> AuditRecord:
        """Record settings changed (or refused, with the reason). Secret fields are
        recorded as "set" or "cleared", never their value."""
        shown = {name: ("set" if value else "cleared") if name in secret_fields else value
                 for name, value in changes.items()}
        details: dict[str, Any] = {"changes": shown}
        if refused:
            details["reason"] = refused
        return self._engine.audit_trail.record(AuditAction.SETTINGS_CHANGED, actor or default_actor(),
                                               outcome=AuditOutcome.REFUSED if refused else AuditOutcome.DONE,
                                               details=details)

    @action(ADMIN, "recording a refusal")
    def record_refusal(self, call: str, *, actor: str, reason: str) -> AuditRecord:
        """Record a call ("group.call") refused before it reached the engine (a role that
        does not allow it), under the audit trail's name for the action when it has one."""
        record = action_table(Engine).get(call)
        return self._engine.audit_trail.record(record.audit if record and record.audit else call, actor,
                                               outcome=AuditOutcome.REFUSED, details={"call": call, "reason": reason})


class Logs(_Calls):
    """memsys's own log: reading, filtering and following it (an admin's, as the Logs page)."""

    @action(ADMIN, "reading the logs")
    def read(self, query: LogQuery | None = None) -> list[LogLine]:
        """memsys's log lines matching `query` (the newest `query.limit`), oldest first."""
        return read_logs(self._engine.settings.log_dir, query or LogQuery())

    @action(ADMIN, "reading the logs")
    def components(self) -> list[str]:
        """The components found among the newest log lines (a filter's choices)."""
        return sorted({line.component for line in read_logs(self._engine.settings.log_dir, LogQuery(limit=5000))})

    @action(ADMIN, "reading the logs")
    def follow(self, query: LogQuery | None = None, *, recent: bool = False, poll: float = 0.5,
               stop: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
        """Log lines matching `query` as they are written from this call on, until `stop()`
        is true (checked every `poll` seconds even when nothing is written). With `recent`,
        the newest `query.limit` lines written before the call come first: no line is
        missed or repeated between the two."""
        query = query or LogQuery()
        folder = self._engine.settings.log_dir
        position = log_position(folder)
        before = read_logs(folder, query, end=position) if recent and position else []
        return itertools.chain(before, follow_logs(folder, query, start=position, poll=poll, stop=stop))


class Engine:
    """One per process. Thread-safe; `close()` stops the Weaviate connection. Its calls
    come in groups (`engine.imports.start(...)`, `engine.jobs.follow(...)`), each call
    with its `Action` record, so `AuthorizedEngine` checks them one by one."""

    status = Group(Status)
    batch = Group(Batch)
    server = Group(Server)
    imports = Group(Imports)
    jobs = Group(Jobs)
    memories = Group(Memories)
    collections = Group(Collections)
    cache = Group(Cache)
    tasks = Group(Tasks)
    audit = Group(Audit)
    logs = Group(Logs)

    def __init__(self, settings: Settings | None = None, system: MemorySystem | None = None, *,
                 program: str | None = None) -> None:
        if program:
            set_program(program)  # "dashboard", "cli": named in log lines and default audit actors
        self.settings = settings or (system.settings if system else Settings.load())
        self.system = system or MemorySystem(self.settings)
        configure_logging(self.settings)
        self.job_store = JobStore(self.settings.jobs_db, timeout=self.settings.jobs_db_timeout)
        self.audit_trail = AuditTrail(self.settings.jobs_db, timeout=self.settings.jobs_db_timeout)
        self.spool = Spool(self.settings.spool_dir)
        self.pipeline = ImportPipeline(self.system, self.job_store)
        self.runner = JobRunner(self.job_store, self._run_job)
        self.task_runner = TaskRunner()

    def _run_job(self, job_id: str) -> None:
        try:
            request = ImportRequest.from_json(self.job_store.request(job_id))
            if request.reembed_into:
                ReembedPipeline(self.system, self.job_store, request).run(job_id)
            else:
                self.pipeline.run(job_id)
        finally:
            # The runner thread lives as long as the process: between jobs it holds no
            # connection to the cache, so closing the engine leaves no file open.
            self.system.router.close()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, program: str | None = None) -> "Engine":
        return cls(settings, program=program)

    def close(self) -> None:
        self.system.close()
        self.job_store.close()
        self.audit_trail.close()
