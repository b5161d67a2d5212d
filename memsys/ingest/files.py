"""From paths to memories: read (readers), chunk (chunking), fill in the import's defaults
and validate. `iter_memories` is what the import engine consumes; it streams, so a large
csv or folder is never held in memory at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from memsys.config import LOCAL_MODEL
from memsys.ingest.chunking import Chunker, ChunkSettings
from memsys.ingest.readers import FieldMapping, InputProblem, OcrSettings, ReadLimits, ReadTally, SourceText, read_sources
from memsys.ingest.readers.isolation import ChunkPlan
from memsys.models import Memory, MemoryValidationError

__all__ = [
    "ChunkSettings",
    "FieldMapping",
    "MemoryDefaults",
    "ReadLimits",
    "iter_memories",
    "memories_from_source",
]


@dataclass(frozen=True)
class MemoryDefaults:
    """The memory fields an import fills in where a file or row does not say otherwise."""

    project: str
    repo: str
    agent: str
    tags: tuple[str, ...] = ()
    source: str = "document-import"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))
        # Bad defaults are a setting to fix, not bad input: raise before reading anything.
        Memory.from_dict({"content": "-", **self.record()})

    def record(self) -> dict[str, object]:
        return {"project": self.project, "repo": self.repo, "agent": self.agent,
                "tags": list(self.tags), "source": self.source}


def iter_memories(
    paths: Sequence[Path | str],
    defaults: MemoryDefaults,
    *,
    mapping: FieldMapping | None = None,
    chunking: ChunkSettings | None = None,
    provider: str = "local",
    model: str = LOCAL_MODEL,
    limits: ReadLimits | None = None,
    ocr: OcrSettings | None = None,
    tally: ReadTally | None = None,
    estimate_only: bool = False,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[Memory | InputProblem]:
    """Every memory the files at `paths` make, in order, and an InputProblem for every
    file, page or row that cannot become one.

    Each memory carries `source_file` (the display name, e.g. "bundle.zip/notes.md"),
    `source_location` ("page 3", "row 12", "line 40") and `chunk_index` (0, 1, ... within
    that location). Chunks fit `provider`/`model`'s token limit. Settings that cannot work
    (chunks over the model's limit) raise ConfigError here, before anything is read.
    `ocr`, `tally` and `estimate_only` go to `read_sources` (scanned pages by OCR);
    `cancelled` is asked while a file is read (ReadCancelled stops the read inside it).
    """
    chunker = Chunker.for_model(provider, model, chunking)
    # Read in worker processes, the text is cut into memories there too (`plan`); read in
    # this process (limits.isolate off), it is cut here.
    plan = ChunkPlan(defaults, provider, model, chunking)
    pieces = read_sources(paths, mapping=mapping, limits=limits, ocr=ocr, tally=tally, estimate_only=estimate_only,
                          cancelled=cancelled, plan=plan)
    return _iter_memories(pieces, defaults, chunker)


def _iter_memories(
    pieces: Iterator[Any], defaults: MemoryDefaults, chunker: Chunker
) -> Iterator[Memory | InputProblem]:
    for piece in pieces:
        if isinstance(piece, (InputProblem, Memory)):
            yield piece
            continue
        try:
            memories = list(memories_from_source(piece, defaults, chunker))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a piece that cannot be chunked is that piece's problem
            where = f"{piece.source_file} {piece.location}".strip()
            yield InputProblem(where, f"could not be cut into chunks ({type(e).__name__}: {str(e)[:200]})")
            continue
        yield from memories


def memories_from_source(
    source: SourceText, defaults: MemoryDefaults, chunker: Chunker
) -> Iterator[Memory | InputProblem]:
    """The memories of one piece of text: its fields over the defaults (tags are added to
    the default tags), validated, then one memory per chunk."""
    record = {**defaults.record(), **source.fields, "content": source.text}
    record["tags"] = source.fields.get("tags", [])
    try:
        checked = Memory.from_dict(record)
    except MemoryValidationError as e:
        where = f"{source.source_file} {source.location}".strip()
        yield InputProblem(where, f"field '{e.field}' {e.problem}")
        return
    tags = tuple(dict.fromkeys(defaults.tags + checked.tags))
    line, counted_to = 1, 0
    for index, chunk in enumerate(chunker.split(source.text)):
        location = source.location
        if source.locate_lines:
            line += source.text.count("\n", counted_to, chunk.start)
            counted_to = chunk.start
            location = f"line {line}"
        yield Memory(
            content=chunk.text,
            project=checked.project,
            repo=checked.repo,
            agent=checked.agent,
            tags=tags,
            source=checked.source,
            source_file=source.source_file,
            source_location=location,
            chunk_index=index,
            record_id=checked.record_id,
        )
