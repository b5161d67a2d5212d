"""The engine as one process-wide object: the memory system, the job store, the
pipeline and the background job runner, plus the spool that keeps every import's input
on disk so a job can always be resumed. The dashboard and the CLI both use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

from memsys.api import MemorySystem
from memsys.config import BatchConfig, Settings
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.documents import FieldMapping, MemoryDefaults, iter_memories
from memsys.ingest.readers import InputProblem
from memsys.jobs import JobRunner, JobStore, iter_chunks
from memsys.models import Memory
from memsys.pipeline import ImportPipeline, ImportRequest, embedder_name, plan_sizes
from memsys.spool import Spool

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

    @property
    def to_embed(self) -> int:
        return self.distinct - self.cached


class Engine:
    """One per process. Thread-safe; `close()` stops the Weaviate connection."""

    def __init__(self, settings: Settings | None = None, system: MemorySystem | None = None) -> None:
        self.settings = settings or (system.settings if system else Settings.load())
        self.system = system or MemorySystem(self.settings)
        self.jobs = JobStore(self.settings.jobs_db)
        self.spool = Spool(self.settings.spool_dir)
        self.pipeline = ImportPipeline(self.system, self.jobs)
        self.runner = JobRunner(self.jobs, self._run_job)

    def _run_job(self, job_id: str) -> None:
        self.pipeline.run(job_id)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "Engine":
        return cls(settings)

    def close(self) -> None:
        self.system.close()
        self.jobs.close()

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
    ) -> str:
        """Record an import job for already-spooled paths; returns its id."""
        request = ImportRequest(
            paths=tuple(str(Path(p).resolve()) for p in paths),
            defaults=defaults,
            mapping=mapping,
            chunking=chunking,
            config=config or BatchConfig(),
            label=label or ", ".join(Path(p).name for p in paths)[:120],
            embedder=self.system.router.provider.fingerprint,
            embedder_name=embedder_name(self.system.router.provider),
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
    ) -> str:
        """Create an import job for spooled paths and run it in the background."""
        job_id = self.create_import(paths, defaults, mapping=mapping, chunking=chunking, config=config, label=label)
        self.runner.submit(job_id)
        return job_id

    def preview(
        self,
        paths: Sequence[Path | str],
        defaults: MemoryDefaults,
        *,
        mapping: FieldMapping | None = None,
        chunking: ChunkSettings | None = None,
        config: BatchConfig | None = None,
        limit: int = 20,
    ) -> ImportPreview:
        config = config or BatchConfig()
        router = self.system.router
        provider = router.provider
        preview = ImportPreview()
        pieces = iter_memories([Path(p) for p in paths], defaults, mapping=mapping, chunking=chunking,
                               provider=provider.name, model=provider.model)
        seen: set[str] = set()
        for chunk in iter_chunks(pieces, 1000):
            new_texts = []
            for piece in chunk:
                if isinstance(piece, InputProblem):
                    preview.problems.append(piece)
                    continue
                preview.memories += 1
                if len(preview.sample) < limit:
                    preview.sample.append(piece)
                if piece.content not in seen:
                    seen.add(piece.content)
                    new_texts.append(piece.content)
            preview.distinct += len(new_texts)
            if new_texts:
                cached = router.cached_texts(new_texts)
                preview.cached += len(cached)
                preview.tokens += sum(provider.count_tokens(t) for t in new_texts if t not in cached)
            preview.batch_sizes.extend(plan_sizes(new_texts, config, provider.max_inputs_per_request))
        preview.provider_calls = math.ceil(preview.to_embed / provider.max_inputs_per_request) if preview.to_embed else 0
        preview.estimated_cost_usd = preview.tokens / 1e6 * provider.price_per_million_tokens
        return preview
