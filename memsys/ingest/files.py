"""From paths to memories: read (readers), each file on disk in a worker process when the
limits say so (workers), chunk (chunking), fill in the import's defaults and validate
(memories). `iter_memories` is what the import engine consumes; it streams, so a large csv
or folder is never held in memory at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

from memsys.config import LOCAL_MODEL
from memsys.ingest.chunking import Chunker, ChunkSettings
from memsys.ingest.memories import MemoryDefaults, memories_from_pieces
from memsys.ingest.readers import (
    FieldMapping,
    FileReader,
    InputProblem,
    OcrSettings,
    ReadLimits,
    ReadTally,
    SourceText,
    read_disk_file,
    read_paths,
)
from memsys.ingest.workers import ChunkPlan, reader_pool
from memsys.models import Memory

__all__ = ["iter_memories", "read_sources"]


def read_sources(
    paths: Sequence[Path | str],
    *,
    mapping: FieldMapping | None = None,
    limits: ReadLimits | None = None,
    ocr: OcrSettings | None = None,
    tally: ReadTally | None = None,
    estimate_only: bool = False,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[SourceText | InputProblem | Memory]:
    """The text pieces of files, folders (recursively) and zip archives, in order, and an
    InputProblem for whatever cannot be read (see readers.read_paths). Each file on disk
    is read in a worker process within `limits` (unless `limits.isolate` is off); while
    one is, `cancelled` is asked every quarter second, and ReadCancelled is raised when
    it says yes. `tally` counts what the read did (OCR pages); `estimate_only` counts
    scanned pages instead of reading them by OCR (for a quick preview)."""
    limits = limits or ReadLimits()
    return read_paths(paths, _file_reader(limits, cancelled, None), mapping=mapping, limits=limits, ocr=ocr,
                      tally=tally, estimate_only=estimate_only)


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
    `ocr`, `tally`, `estimate_only` and `cancelled` are `read_sources`'s.
    """
    chunker = Chunker.for_model(provider, model, chunking)
    limits = limits or ReadLimits()
    # Read in worker processes, the text is cut into memories there too (the plan); read in
    # this process (limits.isolate off), the pieces are cut here.
    read_file = _file_reader(limits, cancelled, ChunkPlan(defaults, provider, model, chunking))
    pieces = read_paths(paths, read_file, mapping=mapping, limits=limits, ocr=ocr, tally=tally,
                        estimate_only=estimate_only)
    return memories_from_pieces(pieces, defaults, chunker)


def prestart_reader(limits: ReadLimits) -> None:
    """Start a reader worker ahead of an import's reading, when files are read in workers:
    it boots while the import is set up (`ReaderPool.prestart`)."""
    if limits.isolate:
        reader_pool().prestart(limits)


def _file_reader(
    limits: ReadLimits, cancelled: Callable[[], bool] | None, plan: ChunkPlan | None
) -> FileReader[SourceText | InputProblem | Memory]:
    """Where each file on disk is read: in a reader worker (the pool), or in this process."""
    if limits.isolate:
        return reader_pool().file_reader(cancelled, plan)
    return read_disk_file
