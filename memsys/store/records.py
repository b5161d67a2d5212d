"""What the store hands back and takes: a memory as stored, a filter naming which
memories, a stored document, a page of a browse, a batch write's outcome, what a batch
needs written, and one memory as a line of an export. Values only: nothing here talks to
Weaviate."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from memsys.lazy import lazy_names
from memsys.models import Memory

if TYPE_CHECKING:
    from weaviate.classes.query import Filter
else:  # imported on first use (memsys.lazy): only a query needs the Weaviate client
    (Filter,) = lazy_names("weaviate.classes.query", "Filter")


@dataclass(frozen=True)
class StoredMemory:
    """A memory as Weaviate holds it; `score` is set on search hits (1 = identical)."""

    uuid: str
    content: str
    project: str
    repo: str
    agent: str
    tags: tuple[str, ...]
    source: str
    source_file: str
    source_location: str
    chunk_index: int
    content_hash: str
    created_at: dt.datetime | None
    score: float | None = None
    document_id: str = ""
    document_hash: str = ""
    record_id: str = ""
    # On search hits: how the hit was found, "meaning" (vector), "keyword" (BM25) or "both".
    matched_by: str = ""
    # On search hits: the query's terms the text really contains (`memsys.store.terms`), and
    # the score as a share of the best hit's in the same search (1.0 for the best).
    terms_found: tuple[str, ...] = ()
    match: float | None = None

    @classmethod
    def from_object(cls, obj: Any, score: float | None = None, matched_by: str = "") -> "StoredMemory":
        p = obj.properties
        return cls(
            uuid=str(obj.uuid),
            content=p.get("content") or "",
            project=p.get("project") or "",
            repo=p.get("repo") or "",
            agent=p.get("agent") or "",
            tags=tuple(p.get("tags") or ()),
            source=p.get("source") or "",
            source_file=p.get("source_file") or "",
            source_location=p.get("source_location") or "",
            chunk_index=int(p.get("chunk_index") or 0),
            content_hash=p.get("content_hash") or "",
            created_at=p.get("created_at"),
            score=score,
            document_id=p.get("document_id") or "",
            document_hash=p.get("document_hash") or "",
            record_id=p.get("record_id") or "",
            matched_by=matched_by,
        )

    def same_as(self, memory: Memory) -> bool:
        """True when writing `memory` would change nothing. The document hash is left out:
        a chunk an edit did not touch stays as it is stored (no write)."""
        return (
            self.content_hash == memory.content_hash
            and self.document_id == memory.document_id
            and self.tags == memory.tags
            and self.source == memory.source
            and self.source_file == memory.source_file
            and self.source_location == memory.source_location
            and self.chunk_index == memory.chunk_index
        )


@dataclass(frozen=True)
class Settled:
    """What each memory of a batch needs, as lists of indexes in order: `to_write` (new:
    embed and write), `to_update` (stored with the same content but other metadata: its
    properties are rewritten with the stored vector, no embedding) and `unchanged`."""

    to_write: list[int]
    to_update: list[int]
    unchanged: list[int]


def settle(memories: Sequence[Memory], existing: dict[str, StoredMemory]) -> Settled:
    out = Settled([], [], [])
    for i, memory in enumerate(memories):
        stored = existing.get(memory.uuid)
        if stored is None or stored.content_hash != memory.content_hash:
            out.to_write.append(i)
        elif stored.same_as(memory):
            out.unchanged.append(i)
        else:
            out.to_update.append(i)
    return out


@dataclass(frozen=True)
class MemoryFilter:
    """Which memories: every given field must match; tags match any of the given tags."""

    project: str | None = None
    repo: str | None = None
    agent: str | None = None
    tags: tuple[str, ...] | None = None
    source: str | None = None
    source_file: str | None = None  # the document's file name as imported ("docs/a.md")
    document_id: str | None = None

    def to_weaviate(self) -> Any:
        parts = []
        for name in ("project", "repo", "agent", "source", "source_file", "document_id"):
            value = getattr(self, name)
            if value:
                parts.append(Filter.by_property(name).equal(value))
        if self.tags:
            parts.append(Filter.by_property("tags").contains_any(list(self.tags)))
        if not parts:
            return None
        return Filter.all_of(parts) if len(parts) > 1 else parts[0]

    @property
    def is_empty(self) -> bool:
        return self.to_weaviate() is None


@dataclass(frozen=True)
class StoredDocument:
    """A document as the store holds it: its id, origin and number of memories."""

    document_id: str
    project: str
    repo: str
    source_file: str
    memories: int


def export_record(memory: StoredMemory) -> dict[str, Any]:
    """A stored memory as one line of an export: its ID, every field and its creation time."""
    return {
        "id": memory.uuid, "content": memory.content, "project": memory.project, "repo": memory.repo,
        "agent": memory.agent, "tags": list(memory.tags), "source": memory.source, "source_file": memory.source_file,
        "source_location": memory.source_location, "chunk_index": memory.chunk_index,
        "document_hash": memory.document_hash,
        **({"record_id": memory.record_id} if memory.record_id else {}),
        "created_at": memory.created_at.isoformat() if memory.created_at else None,
    }


def parse_export_line(line: str, number: int, embedder: str, embedder_name: str) -> tuple[Memory, np.ndarray | None, dt.datetime | None]:
    """One export line back to a memory, its vector as float32 (None when the export has
    none) and its creation time; ValueError names the line and the problem. A vector made
    by another embedder than `embedder` is refused: one collection holds one model's vectors."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"line {number}: not JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: must be a JSON object, got {type(record).__name__}")
    memory_id = record.pop("id", None)
    vector = record.pop("vector", None)
    made_by, made_by_name = record.pop("embedder", None), record.pop("embedder_name", None)
    created_raw = record.pop("created_at", None)
    try:
        memory = Memory.from_dict(record)
    except ValueError as e:
        raise ValueError(f"line {number}: {e}") from None
    if memory_id is not None and str(memory_id) != memory.uuid:
        raise ValueError(f"line {number}: id {memory_id} does not belong to this content and fields (it would be {memory.uuid})")
    if vector is not None:
        if made_by != embedder:
            raise ValueError(
                f"line {number}: its vector was made by {made_by_name or 'an unknown embedder'}, but this store embeds "
                f"with {embedder_name}; restore it with the embedder it was exported with, or export it without vectors"
            )
        # One conversion, checked by its type: a list of numbers only (no strings, nesting or nulls).
        numbers = np.asarray(vector) if isinstance(vector, list) else None
        if numbers is None or numbers.ndim != 1 or not numbers.size or numbers.dtype.kind not in "fiu":
            raise ValueError(f"line {number}: 'vector' must be a list of numbers")
        vector = numbers.astype(np.float32)
    try:
        created = dt.datetime.fromisoformat(created_raw) if created_raw else None
    except (TypeError, ValueError):
        raise ValueError(f"line {number}: created_at {created_raw!r} is not an ISO date and time") from None
    return memory, vector, created


def stored_to_memory(stored: StoredMemory) -> Memory:
    """The memory a stored object holds (the same uuid: content and identity fields)."""
    return Memory(content=stored.content, project=stored.project, repo=stored.repo, agent=stored.agent,
                  tags=stored.tags, source=stored.source, source_file=stored.source_file,
                  source_location=stored.source_location, chunk_index=stored.chunk_index,
                  document_hash=stored.document_hash, record_id=stored.record_id)



@dataclass(frozen=True)
class BrowsePage:
    """A page of memories and the cursor of the next page (None: this is the last)."""

    memories: list[StoredMemory]
    next_after: str | None


@dataclass(frozen=True)
class WriteOutcome:
    """What one batch write did: uuids written, and reasons for the ones that failed."""

    written: list[str]
    failed: dict[int, str]  # index in the batch -> reason

