"""The engine as one process-wide object and the one API the dashboard and the CLI use:
imports (preview, start, follow, cancel, resume, retry), jobs and their metrics, memories
(search, browse, open, delete), the embedding cache (info, check, repair, warm-up, clear),
the status of the store and the embedder, and the saved batch settings. Nothing outside
`memsys` needs to reach past these methods.
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

from weaviate.classes.aggregate import GroupByAggregate

from memsys.api import HYBRID_ALPHA, MemorySystem, check_embedder, describe_embedder, embedder_record, same_embedder
from memsys.cluster import ClusterStatus, NodeState, ReplicationReport, cluster_status, verify_replication
from memsys.audit import AuditAction, AuditOutcome, AuditRecord, AuditTrail
from memsys.config import BatchConfig, Settings, redact_url
from memsys.errors import StoreUnavailableError
from memsys.embeddings.endpoints import EndpointPool, EndpointStatus
from memsys.embeddings.health import PROBLEMS, CacheHealthReport
from memsys.embeddings.factory import provider_from_settings
from memsys.embeddings.router import WarmupReport
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.files import iter_memories
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import (
    MAPPED_FIELDS,
    OCR_SECONDS_PER_PAGE,
    UPLOAD_CAPTION,
    UPLOAD_TYPES,
    FieldMapping,
    InputProblem,
    ReadTally,
    has_columns,
    read_warmup_texts,
    structured_columns,
)
from memsys.jobs import FAILED_PAGE, FailedItem, JobProgress, JobRunner, JobStore, failed_row, iter_chunks
from memsys.jobs.batching import plan_sizes
from memsys.jobs.metrics import BatchMetrics, BatchRecord
from memsys.jobs.pipeline import ImportPipeline
from memsys.jobs.request import ImportRequest, embedder_name, ocr_settings, read_limits
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
from memsys.models import Memory
from memsys import server
from memsys.server import ServerState, ServerStatus
from memsys.store import SEARCH_MODES, BrowsePage, MemoryFilter, StoredMemory, export_record, parse_export_line
from memsys.weaviate_log import WeaviateProblem, weaviate_problems
from memsys.spool import Spool
from memsys.tasks import Progress, TaskProgress, TaskRunner, TaskStatus

# The types this API takes and returns, importable from here: the dashboard imports
# nothing else of memsys but `memsys.config`, `memsys.errors` and `memsys.units`.
__all__ = [
    "MAPPED_FIELDS", "PROBLEMS", "UPLOAD_CAPTION", "UPLOAD_ORIGIN", "UPLOAD_TYPES", "AuditAction", "AuditRecord",
    "BatchMetrics", "BatchRecord", "BrowsePage", "CacheHealthReport", "ClusterStatus", "CollectionVersion",
    "DocumentSummary", "EmbedderStatus", "Engine", "FAILED_PAGE", "FailedItem", "FieldMapping", "ImportPreview",
    "InputProblem", "JobProgress", "LogLine", "LogQuery", "Memory", "MemoryDefaults", "MemoryFilter", "NodeState",
    "Progress", "ReplicationReport", "SEARCH_MODES", "ServerState", "ServerStatus", "StoreStatus", "StoredMemory",
    "TaskStatus", "WarmupReport", "WeaviateProblem", "check_settings", "failed_row",
]
log = get_logger("engine")
# Engine calls and the audit action each one records.
_AUDITED_CALLS = {
    "start_import": AuditAction.IMPORT_STARTED, "create_import": AuditAction.IMPORT_STARTED,
    "cancel": AuditAction.IMPORT_CANCELLED, "resume": AuditAction.IMPORT_RESUMED, "retry_failed": AuditAction.IMPORT_RETRIED,
    "delete": AuditAction.MEMORIES_DELETED, "check_cache": AuditAction.CACHE_REPAIRED, "clear_cache": AuditAction.CACHE_CLEARED,
    "record_settings_change": AuditAction.SETTINGS_CHANGED, "delete_job": AuditAction.MEMORIES_DELETED,
    "start_reembed": AuditAction.REEMBED_STARTED, "create_reembed": AuditAction.REEMBED_STARTED,
    "drop_collection": AuditAction.COLLECTION_DROPPED, "restore": AuditAction.MEMORIES_RESTORED,
    "server_start": AuditAction.SERVER_STARTED, "server_stop": AuditAction.SERVER_STOPPED,
}

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


class Engine:
    """One per process. Thread-safe; `close()` stops the Weaviate connection."""

    def __init__(self, settings: Settings | None = None, system: MemorySystem | None = None, *,
                 program: str | None = None) -> None:
        if program:
            set_program(program)  # "dashboard", "cli": named in log lines and default audit actors
        self.settings = settings or (system.settings if system else Settings.load())
        self.system = system or MemorySystem(self.settings)
        configure_logging(self.settings)
        self.jobs = JobStore(self.settings.jobs_db, timeout=self.settings.jobs_db_timeout)
        self.audit = AuditTrail(self.settings.jobs_db, timeout=self.settings.jobs_db_timeout)
        self.spool = Spool(self.settings.spool_dir)
        self.pipeline = ImportPipeline(self.system, self.jobs)
        self.runner = JobRunner(self.jobs, self._run_job)
        self.tasks = TaskRunner()

    def _run_job(self, job_id: str) -> None:
        try:
            self.pipeline.run(job_id)  # an import or a re-embed, as the job's request says
        finally:
            # The runner thread lives as long as the process: between jobs it holds no
            # connection to the cache, so closing the engine leaves no file open.
            self.system.router.close()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, program: str | None = None) -> "Engine":
        return cls(settings, program=program)

    def close(self) -> None:
        self.system.close()
        self.jobs.close()
        self.audit.close()

    # --- status ----------------------------------------------------------------------
    def store_status(self) -> StoreStatus:
        """Connects (embedded Weaviate starts on first use) and counts the memories."""
        info = self.system.store.server_info()
        return StoreStatus(info["mode"], str(info["version"] or "?"), info["collection"], int(info["objects"]))

    def embedder_status(self) -> EmbedderStatus:
        provider = self.system.router.provider
        return EmbedderStatus(
            provider=provider.name,
            model=provider.model,
            dimensions=provider.dimensions,
            base_url=redact_url(provider.base_url),
            price_per_million_tokens=provider.price_per_million_tokens,
            max_inputs_per_request=provider.max_inputs_per_request,
        )

    def check_connections(self) -> StoreStatus:
        """Reach Weaviate and make one real embedding call (no cache); raises what fails."""
        status = self.store_status()
        self.system.router.embed(["connection check"], kind="query", use_cache=False)
        return status

    def check_embedding_endpoints(self) -> list[EndpointStatus]:
        """Check that every configured embedding endpoint serves the same model (raises
        EmbeddingModelMismatchError naming the one that does not); returns each endpoint's
        state. With the local embedder or a single endpoint there is nothing to compare."""
        provider = self.system.router.provider
        provider.verify()
        return provider.endpoint_status() if isinstance(provider, EndpointPool) else []

    # --- batch settings --------------------------------------------------------------
    @property
    def batch_config_path(self) -> Path:
        return self.settings.batch_config_path

    def saved_batch_config(self) -> BatchConfig:
        """The saved batch settings new imports start from; the guide's defaults when none
        are saved. A saved file that no longer loads raises ConfigError naming the problem."""
        return BatchConfig.saved(self.batch_config_path)

    def save_batch_config(self, config: BatchConfig) -> Path:
        """Save as the batch settings new imports (and the guide's writes) start from."""
        config.validate()
        config.to_file(self.batch_config_path)
        self.system.batch_config = config
        return self.batch_config_path

    # --- the store and its replicas --------------------------------------------------------
    def cluster_status(self) -> ClusterStatus:
        """Weaviate's nodes (down ones marked), shards, replication and consistency levels."""
        return cluster_status(self.system.store)

    def verify_job(self, job_id: str) -> ReplicationReport:
        """Check that every memory the job wrote is readable with consistency ALL and on
        as many nodes as the replication factor asks; names the ones that are not (yet)."""
        self.jobs.require(job_id)
        return verify_replication(self.system.store, job_id, self.jobs.stored_items(job_id))

    # --- the memsys server (embedded Weaviate of this data directory) ----------------
    def server_start(self, *, actor: str | None = None) -> tuple[ServerState, bool]:
        """Start this data directory's server in the background (it outlives this
        process); returns its state and whether this call started it. A start is recorded
        in the audit trail (a server that was already running is not)."""
        self._require_embedded("start")
        state, started = server.ensure_server(self.settings)
        if started:
            self.audit.record(AuditAction.SERVER_STARTED, actor or default_actor(), target=str(state.data_dir),
                              details={"pid": state.pid, "url": state.url})
        return state, started

    def server_stop(self, *, actor: str | None = None) -> ServerState | None:
        """Stop this data directory's server cleanly; returns what was stopped, if any. A
        stop is recorded in the audit trail (asking to stop a stopped server is not)."""
        self._require_embedded("stop")
        state = server.stop_server(self.settings)
        if state is not None:
            self.audit.record(AuditAction.SERVER_STOPPED, actor or default_actor(), target=str(state.data_dir),
                              details={"pid": state.pid, "ran_seconds": round(time.time() - state.started_at, 1)})
        return state

    def server_status(self, count_objects: bool = True) -> ServerStatus:
        """Running or not, where, since when, memory, objects, clients. Starts nothing."""
        return server.server_status(self.settings, count_objects=count_objects)

    def _require_embedded(self, action: str) -> None:
        if self.settings.weaviate_url:
            raise ValueError(f"Weaviate is the server at {self.settings.weaviate_url}; memsys does not {action} that one")

    # --- the spool (memsys/spool.py) -------------------------------------------------
    def new_spool(self) -> Path:
        return self.spool.new_folder()

    def spool_upload(self, upload_id: str, name: str, data: BinaryIO) -> Path:
        """Copy one uploaded file into the spool now (streamed, not held in memory). A name
        with '..' or an absolute path raises UnsafeNameError: nothing lands outside the spool."""
        return self.spool.save_upload(upload_id, name, data)

    def spool_paths(self, paths: Sequence[Path | str]) -> list[Path]:
        """Copy files and folders into a new spool folder; returns the copies."""
        return self.spool.copy_in(paths)

    # --- imports ---------------------------------------------------------------------
    def create_import(
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
        request = ImportRequest(
            paths=tuple(str(Path(p).resolve()) for p in paths),
            defaults=defaults,
            mapping=mapping,
            chunking=chunking,
            config=config or self.saved_batch_config(),
            label=label or ", ".join(Path(p).name for p in paths)[:120],
            embedder=self.system.router.provider.fingerprint,
            embedder_name=embedder_name(self.system.router.provider),
            started_by=started_by,
            origin=origin_key(origin, defaults) if origin else "",
            mirror=mirror,
        )
        return self.jobs.create_job(request.to_json())

    def start_import(
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
        job_id = self.create_import(paths, defaults, mapping=mapping, chunking=chunking, config=config, label=label,
                                    started_by=started_by, origin=origin, mirror=mirror)
        self.record_import_started(job_id, actor=actor or started_by or None)
        self.runner.submit(job_id)
        return job_id

    def record_import_started(self, job_id: str, *, actor: str | None = None) -> AuditRecord:
        """Record who started an import (the CLI creates its job and runs it itself)."""
        request = self.jobs.request(job_id)
        return self.audit.record(AuditAction.IMPORT_STARTED, actor or default_actor(), target=job_id, details={
            "label": request.get("label", ""), "files": [Path(p).name for p in request.get("paths", [])],
            "project": (request.get("defaults") or {}).get("project", ""),
        })

    def run(self, job_id: str) -> None:
        """Queue a recorded job on this process's runner."""
        self.runner.submit(job_id)

    def follow(self, job_id: str, on_progress: ProgressCallback | None = None, poll: float = 0.25) -> JobProgress:
        """Wait for a job to end, calling `on_progress` with its progress about every
        `poll` seconds; returns its final progress."""
        while True:
            try:
                job = self.runner.wait(job_id, timeout=poll, poll=min(poll, 0.1))
            except TimeoutError:
                if on_progress is not None:
                    on_progress(self.jobs.require(job_id))
                continue
            if on_progress is not None:
                on_progress(job)
            return job

    def wait(self, job_id: str, timeout: float | None = None) -> JobProgress:
        return self.runner.wait(job_id, timeout=timeout)

    def cancel(self, job_id: str, *, actor: str | None = None) -> bool:
        """Ask a job to stop after the batch in flight (works across processes); False,
        and the refusal recorded, when the job is not going."""
        job = self.jobs.require(job_id)
        if not job.is_active:
            self.audit.record(AuditAction.IMPORT_CANCELLED, actor or default_actor(), target=job_id,
                              outcome=AuditOutcome.REFUSED,
                              details={"state": job.state, "reason": f"job {job_id} is {job.state}; nothing to cancel"})
            return False
        with self._audited(AuditAction.IMPORT_CANCELLED, actor, job_id, {"state": job.state}) as details:
            self.runner.cancel(job_id)
            details.update(processed=job.processed, pending=job.pending, total=job.total)
        return True

    def resume(self, job_id: str, *, actor: str | None = None) -> str:
        """Continue a cancelled, failed or interrupted job in the background."""
        job = self.jobs.require(job_id)
        with self._audited(AuditAction.IMPORT_RESUMED, actor, job_id, {"state": job.state, "pending": job.pending}):
            return self.runner.resume(job_id)

    def retry_failed(self, job_id: str, *, actor: str | None = None) -> int:
        """Re-run a finished job's failed items in the background; returns how many."""
        with self._audited(AuditAction.IMPORT_RETRIED, actor, job_id) as details:
            details["items"] = self.runner.retry_failed(job_id)
        return int(details["items"])

    def job(self, job_id: str) -> JobProgress | None:
        """A job's progress; while it runs, with the embedding provider's budget in use."""
        job = self.jobs.get(job_id)
        budget = getattr(self.system.router.provider, "budget", None)
        if job is None or budget is None or not job.is_active:
            return job
        return dataclasses.replace(job, budget=budget.status())

    def require_job(self, job_id: str) -> JobProgress:
        """The job, or ValueError naming the id that does not exist."""
        return self.jobs.require(job_id)

    def recent_jobs(self, limit: int = 50) -> list[JobProgress]:
        return self.jobs.list_jobs(limit=limit)

    def failed_items(self, job_id: str, page: int = 0, per_page: int = FAILED_PAGE) -> list[FailedItem]:
        """Page `page` (from 0) of a job's failed items, in item order; never all at once."""
        return self.jobs.failed_items(job_id, limit=per_page, offset=page * per_page)

    def iter_failed_items(self, job_id: str) -> Iterable[FailedItem]:
        """Every failed item of a job, read from the store a page at a time."""
        return self.jobs.iter_failed_items(job_id)

    def job_warnings(self, job_id: str, limit: int = 100) -> tuple[int, list[tuple[str, str]]]:
        """(how many warnings the job's files gave, the first `limit` of them as (item, reason)):
        files that were read but not exactly (bytes replaced, an uncertain encoding guess)."""
        return self.jobs.warnings(job_id, limit)

    def failed_counts(self, job_id: str) -> tuple[int, int]:
        """(failed items, how many of them "Retry failed" would try again)."""
        return self.jobs.failed_counts(job_id)

    def failed_items_csv(self, job_id: str) -> str:
        """Every failed item of a job as CSV, read from the store a page at a time."""
        out = io.StringIO()
        self.jobs.write_failed_csv(job_id, out)
        return out.getvalue()

    def batches(self, job_id: str) -> list[BatchRecord]:
        return self.jobs.batches(job_id)

    def errors_by_type(self, job_id: str) -> dict[str, int]:
        return self.jobs.errors_by_type(job_id)

    def metrics(self, job_id: str) -> BatchMetrics:
        """The guide's BatchMetrics for a job, rebuilt from its stored batches."""
        return self.jobs.metrics(job_id)

    @staticmethod
    def is_structured(path: Path) -> bool:
        """True for files read as records (csv, tsv, jsonl), whose columns can be mapped."""
        return has_columns(Path(path))

    @staticmethod
    def columns_in(path: Path) -> list[str]:
        """The column names a structured file offers for mapping ([] when none can be read)."""
        return structured_columns(Path(path))

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
        config = config or self.saved_batch_config()
        router = self.system.router
        provider = router.provider
        preview = ImportPreview(price_per_million_tokens=provider.price_per_million_tokens)
        tally = ReadTally()
        pieces = iter_memories([Path(p) for p in paths], defaults, mapping=mapping, chunking=chunking,
                               limits=read_limits(self.settings),
                               provider=provider.name, model=provider.model,
                               ocr=ocr_settings(self.settings), tally=tally, estimate_only=True, cancelled=cancelled)
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
                cached = router.with_cache_dir(config.resolve_cache_dir(self.settings.data_dir)).cached_texts(new_texts) \
                    if config.enable_cache else set()
                preview.cached += len(cached)
                preview.tokens += sum(provider.count_tokens(t) for t in new_texts if t not in cached)
            preview.batch_sizes.extend(plan_sizes(new_texts, config, provider.max_inputs_per_request))
        preview.ocr_pages = tally.ocr_pages
        preview.provider_calls = math.ceil(preview.to_embed / provider.max_inputs_per_request) if preview.to_embed else 0
        preview.estimated_cost_usd = preview.tokens / 1e6 * provider.price_per_million_tokens
        if origin:
            gone = self.jobs.gone_documents(origin_key(origin, defaults), documents)
            preview.mirror_documents = len(gone)
            preview.mirror_memories = sum(self.system.store.count(MemoryFilter(document_id=d.document_id)) for d in gone)
        return preview

    # --- memories --------------------------------------------------------------------
    def search(self, query: str, limit: int = 10, where: MemoryFilter | None = None, *, mode: str = "hybrid",
               alpha: float = HYBRID_ALPHA) -> list[StoredMemory]:
        """Memories best matching `query`, best first, within the filter: by meaning and
        keywords (`hybrid`), or by one (`vector`, `keyword`); each hit says how it matched."""
        where = where or MemoryFilter()
        return self.system.search_memories(
            query, limit=limit, project=where.project, repo=where.repo, agent=where.agent,
            tags=list(where.tags) if where.tags else None, mode=mode, alpha=alpha,
        )

    def browse(self, where: MemoryFilter | None = None, offset: int = 0, limit: int = 50) -> list[StoredMemory]:
        """Memories matching the filter, newest first, a page at a time."""
        return self.system.store.browse(offset=offset, limit=limit, where=where)

    def browse_page(self, where: MemoryFilter | None = None, after: str | None = None, limit: int = 50) -> BrowsePage:
        """A page of memories in a stable order (by ID) after the cursor `after`, with the
        cursor of the next page: no 10,000-result cap, however large the store."""
        return self.system.store.page_after(after, limit=limit, where=where)

    def export(self, out: TextIO, where: MemoryFilter | None = None, *, vectors: bool = False) -> int:
        """Write the memories matching `where` (all when None) as JSON lines: content and
        every field, when they were created, and with `vectors` their vectors and the
        embedder that made them, so `restore` puts them back without embedding. Returns
        how many."""
        provider = self.system.router.provider
        n = 0
        for memory, vector in self.system.store.scan(where, include_vector=vectors):
            record = export_record(memory)
            if vector is not None:
                record["vector"] = vector
                record["embedder"] = provider.fingerprint
                record["embedder_name"] = embedder_name(provider)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n

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
        with self._audited(AuditAction.MEMORIES_RESTORED, actor, self.system.store.collection_name,
                           {"source": source} if source else None) as details:
            check_embedder(self.system)
            provider = self.system.router.provider
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

    def restore_overwrites(self, lines: Iterable[str], batch: int = 1000) -> tuple[int, int]:
        """What `restore` of these export lines would do to what is stored, writing nothing:
        how many memories the lines hold, and how many of them are stored now with other
        fields (tags, source, document, place), which the restore would overwrite. A line
        that is not a memory raises ValueError naming it, as `restore` does."""
        provider = self.system.router.provider
        total = overwritten = 0
        pending: list[Memory] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            pending.append(parse_export_line(line, number, provider.fingerprint, embedder_name(provider))[0])
            total += 1
            if len(pending) >= batch:
                overwritten += self._stored_otherwise(pending)
                pending = []
        return total, overwritten + self._stored_otherwise(pending)

    def _stored_otherwise(self, memories: list[Memory]) -> int:
        """How many of these memories are stored with other fields than theirs."""
        stored = self.system.store.existing([m.uuid for m in memories]) if memories else {}
        return sum(1 for m in memories if m.uuid in stored and not stored[m.uuid].same_as(m))

    def _restore_batch(self, batch: list[tuple[Memory, list[float] | None, Any]]) -> int:
        missing = [i for i, (_, v, _) in enumerate(batch) if v is None]
        vectors: list[Any] = [v for _, v, _ in batch]
        if missing:
            embedded = self.system.router.embed([batch[i][0].content for i in missing]).vectors
            for k, i in enumerate(missing):
                vectors[i] = embedded[k]
        outcome = self.system.store.write([m for m, _, _ in batch], vectors, created_at=[c for _, _, c in batch])
        if outcome.failed:
            first = min(outcome.failed)
            raise StoreUnavailableError(
                f"Weaviate refused {len(outcome.failed)} restored memories, e.g. {batch[first][0].uuid}: {outcome.failed[first]}")
        return len(outcome.written)

    def count(self, where: MemoryFilter | None = None) -> int:
        return self.system.store.count(where)

    def get_memory(self, memory_id: str) -> StoredMemory | None:
        return self.system.get_memory(memory_id)

    def delete(self, where: MemoryFilter, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every memory the filter matches (an empty filter is refused); with
        `dry_run`, only count them. Returns how many. The job database and the spool drop
        their content first, so no resume or retry can write them again. A deletion (not a
        dry run) is recorded in the audit trail with the filter and the count."""
        if dry_run:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            return self.system.store.count(where)
        shown = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(where).items() if v}
        with self._audited(AuditAction.MEMORIES_DELETED, actor, self.system.store.collection_name,
                           {"filter": shown}) as details:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            started = time.monotonic()
            deleted = self.system.store.delete_matching(where, before_delete=self._forget)
            # Items never stored (failed, pending) go too, or a retry would write them.
            fields = {name: getattr(where, name) for name in ("project", "repo", "agent", "source", "source_file")
                      if getattr(where, name)}
            if fields or where.tags:
                self._forget(self.jobs.uuids_matching(fields, where.tags or ()))
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    def delete_job(self, job_id: str, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every stored memory an import job's items name, and what the job keeps
        of their content (its items' text, its spooled files). Returns how many memories.
        A deletion (not a dry run) is recorded in the audit trail with the job and the count."""
        job = self.jobs.require(job_id)
        if dry_run:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            return len(list(self.system.store.existing(self.jobs.job_uuids(job_id))))
        with self._audited(AuditAction.MEMORIES_DELETED, actor, self.system.store.collection_name,
                           {"filter": {"job": job_id}}) as details:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            started = time.monotonic()
            uuids = self.jobs.job_uuids(job_id)
            stored = list(self.system.store.existing(uuids))
            self._forget(uuids)  # the items not stored yet too: a resume must not write them
            deleted = self.system.store.delete_ids(stored)
            self.spool.drop(self.jobs.request(job_id).get("paths") or [])
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    def _forget(self, uuids: list[str]) -> None:
        """Before memories are deleted: their text leaves the job database, and a spooled
        file leaves the spool once no job item holds text from it any more."""
        sources = self.jobs.sources_of(uuids)
        self.jobs.forget(uuids)
        self._forget_sources(sources)
        # A re-embed copies from a snapshot: what it already wrote goes too, or the switch
        # to its collection would bring the deleted memories back.
        for target in self._unfinished_reembeds():
            self.system.store.with_collection(target, physical=True).delete_ids(uuids)

    def _unfinished_reembeds(self) -> list[str]:
        """The collections re-embed jobs are filling (running, or stopped to be resumed)."""
        versions = set(self.system.store.versions())
        targets = {j.request.get("reembed_into") for j in self.jobs.list_jobs(limit=200) if j.state != "completed"}
        return sorted(t for t in targets if t and t in versions)

    def _forget_sources(self, sources: set[tuple[str, str]]) -> None:
        for job_id, source_file in sources:
            if not self.jobs.keeps_content_of(job_id, source_file):
                self.spool.drop(self.jobs.request(job_id).get("paths") or [], source_file)

    def documents(self, where: MemoryFilter | None = None, limit: int = 1000) -> list[DocumentSummary]:
        """The stored documents (within the filter), most memories first: each with its
        memory count and the last import that read it."""
        groups = self.system.store.documents(where, limit=limit)
        last = self.jobs.last_imports([g.document_id for g in groups])
        return [
            DocumentSummary(g.document_id, g.project, g.repo, g.source_file, g.memories,
                            *(last.get(g.document_id) or ("", None)))
            for g in groups
        ]

    def source_files(self, where: MemoryFilter | None = None, limit: int = 10_000) -> list[str]:
        """The file names documents were imported under (within the filter), sorted, in one
        aggregate: what a file name that matched nothing is compared with."""
        store = self.system.store
        res = store.on_a_node(lambda: store.collection.aggregate.over_all(
            filters=where.to_weaviate() if where else None,
            group_by=GroupByAggregate(prop="source_file", limit=limit),
            total_count=True,
        ))
        return sorted(str(g.grouped_by.value) for g in res.groups if g.grouped_by.value)

    # --- re-embedding (memsys/jobs/reembed.py) -----------------------------------------
    def collections(self) -> list[CollectionVersion]:
        """The store's physical collections, oldest first: the one search uses and the
        ones earlier re-embeds left behind, each with its count and embedder."""
        store = self.system.store
        store.ensure_collection()
        live = store.live_collection()
        out = []
        for name in store.versions():
            recorded = store.recorded_embedder(name)
            out.append(CollectionVersion(name, name == live, store.with_collection(name, physical=True).count(),
                                         describe_embedder(recorded) if recorded else "not recorded"))
        return out

    def needs_reembed(self) -> str:
        """Why the collection searched now does not match the configured embedder (naming
        both), or "" when it does or does not say (made before memsys recorded it: imports
        go in, and `create_reembed` still rebuilds it, recording the embedder)."""
        store = self.system.store
        recorded = store.recorded_embedder()
        current = embedder_record(self.system.router.provider)
        if recorded is None or same_embedder(self.system.router.provider, recorded):
            return ""
        return (f"{store.live_collection()} holds vectors of {describe_embedder(recorded)}; the embedder is set to "
                f"{describe_embedder(current)}")

    def create_reembed(self, *, config: BatchConfig | None = None, started_by: str = "") -> str:
        """Record a re-embed job: every memory of the collection searched now is embedded
        with the configured embedder into a new collection, which search switches to when
        the job completes. Refused (ValueError) when the collection already matches the
        embedder or another re-embed is under way. Returns the job id."""
        store = self.system.store
        store.ensure_collection()
        recorded = store.recorded_embedder()
        if recorded is not None and same_embedder(self.system.router.provider, recorded):
            raise ValueError(f"{store.live_collection()} is already embedded with "
                             f"{describe_embedder(embedder_record(self.system.router.provider))}; there is nothing to re-embed")
        for job in self.jobs.list_jobs(limit=200):
            if job.is_active and self.jobs.request(job.job_id).get("reembed_into"):
                raise ValueError(f"re-embed job {job.job_id} is {job.state}; wait for it or cancel it first")
        source, target = store.live_collection(), store.next_version()
        provider = self.system.router.provider
        request = ImportRequest(
            paths=(), defaults=MemoryDefaults("re-embed", "re-embed", "re-embed"), config=config or self.saved_batch_config(),
            label=f"re-embed {source} into {target} with {embedder_name(provider)}"[:120],
            embedder=provider.fingerprint, embedder_name=embedder_name(provider), started_by=started_by,
            reembed_from=source, reembed_into=target,
        )
        return self.jobs.create_job(request.to_json())

    def start_reembed(self, *, config: BatchConfig | None = None, started_by: str = "",
                      actor: str | None = None) -> str:
        """Create a re-embed job (see `create_reembed`) and run it in the background;
        recorded in the audit trail (a refusal too)."""
        with self._audited(AuditAction.REEMBED_STARTED, actor or started_by or None,
                           self.system.store.live_collection()) as details:
            job_id = self.create_reembed(config=config, started_by=started_by)
            details["job"] = job_id
        self.runner.submit(job_id)
        return job_id

    def drop_collection(self, name: str, *, actor: str | None = None) -> int:
        """Drop an old collection of the store (one search no longer uses); returns how
        many memories it held. The collection searched now is refused. Recorded in the
        audit trail with the count."""
        with self._audited(AuditAction.COLLECTION_DROPPED, actor, name) as details:
            store = self.system.store
            n = store.with_collection(name, physical=True).count() if name in store.versions() else 0
            store.drop_version(name)
            details["count"] = n
        return n

    # --- the embedding cache ---------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.system.router.cache_dir

    def cache_info(self) -> dict[str, Any]:
        """Entries, size, lifetime and session hits and misses, limit, policy, per model."""
        return self.system.router.get_cache_info()

    def check_cache(self, fix: bool = False, progress: Progress | None = None, *,
                    actor: str | None = None) -> CacheHealthReport:
        """Find (and with `fix`, remove or repair) cache entries that cannot be trusted.
        A repair is recorded in the audit trail with its counts."""
        router = self.system.router
        what = "repair" if fix else "check"
        log.info("cache %s started: %s", what, router.cache_dir,
                 extra=event("cache.check.started", fix=fix, directory=str(router.cache_dir)))
        if not fix:
            report = router.check_cache(fix=False, progress=progress)
        else:
            with self._audited(AuditAction.CACHE_REPAIRED, actor, str(router.cache_dir)) as details:
                report = router.check_cache(fix=True, progress=progress)
                details.update(checked=report.checked, bad=len(report.bad_entries), removed=len(report.removed),
                               rebuilt=report.rebuilt, problems=report.problem_counts())
        log.info("cache %s done in %.1f s: %d checked, %d healthy, %d bad, %d removed", what, report.seconds,
                 report.checked, report.healthy, len(report.bad_entries), len(report.removed),
                 extra=event("cache.check.done", fix=fix, checked=report.checked, healthy=report.healthy,
                             bad=len(report.bad_entries), removed=len(report.removed), seconds=round(report.seconds, 3),
                             problems=report.problem_counts()))
        return report

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
        report = self.system.router.warm_up(stream, progress=progress, total=total)
        log.info("cache warm-up done in %.1f s: %d texts, %d already cached, %d embedded", report.seconds, report.texts,
                 report.already_cached, report.embedded,
                 extra=event("cache.warmup.done", texts=report.texts, already_cached=report.already_cached,
                             embedded=report.embedded, seconds=round(report.seconds, 3)))
        return report

    def clear_cache(self, *, actor: str | None = None) -> int:
        """Remove every cached vector; returns how many entries went (recorded)."""
        with self._audited(AuditAction.CACHE_CLEARED, actor, str(self.system.router.cache_dir)) as details:
            details["removed"] = self.system.router.clear()
        return int(details["removed"])

    # --- short background tasks (cache check, repair, warm-up from the dashboard) ------
    def start_task(self, name: str, work: Callable[[Progress], Any]) -> str:
        """Run `work(progress)` in the background; poll it with `task(task_id)`."""
        return self.tasks.submit(name, work)

    def task(self, task_id: str) -> TaskStatus | None:
        return self.tasks.get(task_id)

    def cancel_task(self, task_id: str) -> bool:
        """Ask a background task to stop (a preview stops inside the file it is reading);
        False when it is no longer running."""
        return self.tasks.cancel(task_id)

    def start_preview(self, paths: Sequence[Path | str], defaults: MemoryDefaults, **options: Any) -> str:
        """`preview(paths, defaults, **options)` as a background task, so a page never waits
        on a slow file: poll it with `task(task_id)` (its result is the ImportPreview), stop
        it with `cancel_task` (the read stops inside the file it is in)."""
        paths = list(paths)

        def work(progress: TaskProgress) -> ImportPreview:
            return self.preview(paths, defaults, cancelled=progress.cancelled, **options)

        return self.tasks.submit("preview", work)

    # --- settings changes, the audit trail and the log ----------------------------------
    # `actor` is who acts: the signed-in user once sign-in exists, else `default_actor()`
    # (the dashboard, or the OS user of the CLI or a script). Refusals are recorded too.

    def record_settings_change(self, changes: Mapping[str, str], *, secret_fields: Sequence[str] = (),
                               actor: str | None = None, refused: str = "") -> AuditRecord:
        """Record settings changed (or refused, with the reason). Secret fields are
        recorded as "set" or "cleared", never their value."""
        shown = {name: ("set" if value else "cleared") if name in secret_fields else value
                 for name, value in changes.items()}
        details: dict[str, Any] = {"changes": shown}
        if refused:
            details["reason"] = refused
        return self.audit.record(AuditAction.SETTINGS_CHANGED, actor or default_actor(),
                                 outcome=AuditOutcome.REFUSED if refused else AuditOutcome.DONE, details=details)

    def record_refusal(self, call: str, *, actor: str, reason: str) -> AuditRecord:
        """Record an action refused before it reached the engine (a role that does not
        allow it), named as the audit trail names the action when it has a name there."""
        return self.audit.record(_AUDITED_CALLS.get(call, call), actor, outcome=AuditOutcome.REFUSED,
                                 details={"call": call, "reason": reason})

    def weaviate_problems(self, since: dt.datetime | None = None, limit: int = 5) -> list[WeaviateProblem]:
        """What embedded Weaviate's own log reports that an operator must know (disk or
        memory pressure, a failed start, errors), newest last; by default the last day's."""
        if self.settings.weaviate_mode != "embedded":
            return []  # a server memsys does not run keeps its own log
        since = since or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        return weaviate_problems(server.log_file(self.settings), since=since, limit=limit)

    def audit_trail(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
                    since: dt.datetime | None = None, limit: int = 500) -> list[AuditRecord]:
        """The newest audit records matching every given field, newest first."""
        return self.audit.records(action=action, actor=actor, target=target, since=since, limit=limit)

    def read_logs(self, query: LogQuery | None = None) -> list[LogLine]:
        """memsys's log lines matching `query` (the newest `query.limit`), oldest first."""
        return read_logs(self.settings.log_dir, query or LogQuery())

    def log_components(self) -> list[str]:
        """The components found among the newest log lines (a filter's choices)."""
        return sorted({line.component for line in read_logs(self.settings.log_dir, LogQuery(limit=5000))})

    def follow_logs(self, query: LogQuery | None = None, *, recent: bool = False, poll: float = 0.5,
                    stop: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
        """Log lines matching `query` as they are written from this call on, until `stop()`
        is true (checked every `poll` seconds even when nothing is written). With `recent`,
        the newest `query.limit` lines written before the call come first: no line is
        missed or repeated between the two."""
        query = query or LogQuery()
        folder = self.settings.log_dir
        position = log_position(folder)
        before = read_logs(folder, query, end=position) if recent and position else []
        return itertools.chain(before, follow_logs(folder, query, start=position, poll=poll, stop=stop))

    @contextmanager
    def _audited(self, action: AuditAction, actor: str | None, target: str,
                details: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Record `action` once the block ends: done (with what the block added to the
        details), refused (a ValueError: memsys said no) or failed (any other error)."""
        who = actor or default_actor()
        recorded = dict(details or {})
        try:
            yield recorded
        except ValueError as e:
            self.audit.record(action, who, target=target, outcome=AuditOutcome.REFUSED, details={**recorded, "reason": str(e)})
            raise
        except Exception as e:
            self.audit.record(action, who, target=target, outcome=AuditOutcome.FAILED,
                              details={**recorded, "reason": f"{type(e).__name__}: {e}"})
            raise
        self.audit.record(action, who, target=target, details=recorded)

