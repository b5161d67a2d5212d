"""From a piece of text to memories: the import's defaults filled in where the piece says
nothing, the record validated, then one memory per chunk. Runs wherever the text was read:
in a reader worker (`workers`) or in the importing process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from memsys.ingest.chunking import Chunker
from memsys.ingest.readers.sources import InputProblem, SourceText, parser_said
from memsys.models import Memory, MemoryValidationError

__all__ = ["MemoryDefaults", "memories_from_pieces", "memories_from_source"]


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


def memories_from_pieces(
    pieces: Iterable[SourceText | InputProblem | Memory], defaults: MemoryDefaults, chunker: Chunker
) -> Iterator[Memory | InputProblem]:
    """Each piece of text as its memories; problems and memories already cut pass through.
    A piece that cannot be cut into chunks is that piece's problem, not the import's."""
    for piece in pieces:
        if not isinstance(piece, SourceText):
            yield piece
            continue
        try:
            memories = list(memories_from_source(piece, defaults, chunker))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a piece that cannot be chunked is that piece's problem
            where = f"{piece.source_file} {piece.location}".strip()
            yield InputProblem(where, f"could not be cut into chunks ({parser_said(e)})")
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
