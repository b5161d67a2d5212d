"""The types the engine's calls take and return, beyond those of the modules below it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from memsys.config import Settings
from memsys.embeddings.factory import provider_from_settings
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import OCR_SECONDS_PER_PAGE, InputProblem
from memsys.jobs import JobProgress
from memsys.models import Memory


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
    # Compared with the store: documents it does not hold yet, holds otherwise (other
    # chunks, other metadata), holds exactly so; and their memories. `changed_memories`
    # are the changed documents' memories to write or update; `stale_memories` their
    # stored chunks they no longer have (removed when the import completes).
    documents: int = 0
    new_documents: int = 0
    changed_documents: int = 0
    unchanged_documents: int = 0
    new_memories: int = 0
    changed_memories: int = 0
    unchanged_memories: int = 0
    stale_memories: int = 0
    to_write: int = 0  # memories with new content: embedded (unless cached) and written
    to_update: int = 0  # memories stored with the same content, other metadata: rewritten
    # Names of the new and changed documents (their files), at most `limit` each.
    new_names: list[str] = field(default_factory=list)
    changed_names: list[str] = field(default_factory=list)
    # How long reading took here, and the whole import by this machine's measured speed
    # (None: no import has measured what this one needs yet; `speed_jobs` says from how many).
    read_seconds: float = 0.0
    estimated_seconds: float | None = None
    speed_jobs: int = 0

    @property
    def ocr_seconds(self) -> float:
        """About how long reading the scanned pages will take."""
        return self.ocr_pages * OCR_SECONDS_PER_PAGE

    @property
    def to_embed(self) -> int:
        return self.distinct - self.cached

    @property
    def nothing_to_do(self) -> bool:
        """Every memory is stored already exactly so, and nothing would be removed."""
        return (self.memories > 0 and not (self.to_write or self.to_update or self.stale_memories
                                           or self.mirror_memories or self.ocr_pages))


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


ProgressCallback = Callable[[JobProgress], None]


# --- names people type (knowledge bases, parts, agents) ---------------------------------------

def name_key(name: str) -> str:
    """What two names a person typed are compared by: case and spaces set aside."""
    return " ".join(name.split()).casefold()


def tidy_name(name: str) -> str:
    """A name as typed, with surrounding and repeated spaces removed."""
    return " ".join(name.split())


def find_name(typed: str, names: list[str] | tuple[str, ...]) -> str | None:
    """The name among `names` that `typed` means, forgivingly (exactly, else ignoring case
    and spaces), or None."""
    if typed in names:
        return typed
    key = name_key(typed)
    return next((n for n in names if name_key(n) == key), None) if key else None
