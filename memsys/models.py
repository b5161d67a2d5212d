"""The records that cross module boundaries: a `Memory` (what is stored in Weaviate),
its validation, and the identity that makes its UUID deterministic.
"""
from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

REQUIRED_TEXT_FIELDS = ("content", "project", "repo", "agent")
MEMORY_FIELDS = REQUIRED_TEXT_FIELDS + ("tags", "source", "source_file", "source_location", "chunk_index", "document_hash",
                                        "record_id")
DEFAULT_SOURCE = "agent"


class MemoryValidationError(ValueError):
    """A memory record is not valid. `index` and `field` say which and where."""

    def __init__(self, index: int | None, field_name: str, problem: str) -> None:
        self.index = index
        self.field = field_name
        self.problem = problem
        where = f"memory #{index}" if index is not None else "memory"
        super().__init__(f"{where}: field '{field_name}' {problem}")


@dataclass(frozen=True)
class Memory:
    """One memory: the content plus who and where it belongs to, and where it came from."""

    content: str
    project: str
    repo: str
    agent: str
    tags: tuple[str, ...] = ()
    source: str = DEFAULT_SOURCE
    # Where the text came from, so a search hit can be traced back to its file.
    source_file: str = ""
    source_location: str = ""  # "page 3", "row 12", "line 40", ""
    chunk_index: int = 0
    # The content hash of the whole document (all its chunks, in order) as it was when this
    # chunk was imported; "" for a memory that did not come from a document.
    document_hash: str = ""
    # A row's own id (the id column of a csv/jsonl/json import): the row is then a document
    # of its own, and the id is part of the memory's identity.
    record_id: str = ""
    _uuid: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))

    # Computed once per memory (an import asks for each several times); a frozen dataclass
    # still takes cached_property, which writes to the instance's __dict__ directly.
    @functools.cached_property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()

    @functools.cached_property
    def document_id(self) -> str:
        """Which document this memory belongs to: project + repo + its record id, or else
        its source file ("" when it has neither). A re-import of the document replaces
        exactly its memories."""
        return document_id(self.project, self.repo, self.source_file, self.record_id)

    @property
    def uuid(self) -> str:
        """Deterministic: the same content under the same project/repo/agent is one object."""
        if not self._uuid:
            identity = {
                "project": self.project,
                "repo": self.repo,
                "agent": self.agent,
                "content": self.content,
            }
            if self.record_id:  # only then: every other memory keeps the uuid it always had
                identity["record_id"] = self.record_id
            object.__setattr__(self, "_uuid", _uuid5(json.dumps(identity, sort_keys=True, ensure_ascii=False)))
        return self._uuid

    def properties(self) -> dict[str, Any]:
        """Weaviate properties, without created_at (the writer stamps it)."""
        return {
            "content": self.content,
            "project": self.project,
            "repo": self.repo,
            "agent": self.agent,
            "tags": list(self.tags),
            "source": self.source,
            "source_file": self.source_file,
            "source_location": self.source_location,
            "chunk_index": self.chunk_index,
            "content_hash": self.content_hash,
            "document_id": self.document_id,
            "document_hash": self.document_hash,
            "record_id": self.record_id,
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.properties()
        del d["content_hash"], d["document_id"]
        for name in ("document_hash", "record_id"):
            if not d[name]:
                del d[name]  # a memory not from a document has the plain record shape write_memory takes
        return d

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], index: int | None = None) -> "Memory":
        """Validate a record as write_memory takes it (content, project, repo, agent, tags, source)
        and build a Memory; raise MemoryValidationError naming the index and field."""
        if not isinstance(record, Mapping):
            raise MemoryValidationError(index, "*", f"must be a dict, got {type(record).__name__}")
        unknown = sorted(k for k in record if k not in MEMORY_FIELDS)
        if unknown:
            raise MemoryValidationError(index, unknown[0], f"is not a memory field (known: {', '.join(MEMORY_FIELDS)})")
        values: dict[str, Any] = {}
        for name in REQUIRED_TEXT_FIELDS:
            if name not in record or record[name] is None:
                raise MemoryValidationError(index, name, "is missing")
            values[name] = _text(index, name, record[name], required=True)
        tags = record.get("tags", [])
        if tags is None:
            tags = []
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
            raise MemoryValidationError(index, "tags", f"must be a list of strings, got {type(tags).__name__}")
        clean_tags = []
        for i, tag in enumerate(tags):
            if not isinstance(tag, str):
                raise MemoryValidationError(index, "tags", f"item {i} must be a string, got {type(tag).__name__}")
            if tag.strip():
                clean_tags.append(tag.strip())
        values["tags"] = tuple(dict.fromkeys(clean_tags))
        source = record.get("source", DEFAULT_SOURCE)
        values["source"] = DEFAULT_SOURCE if source in (None, "") else _text(index, "source", source, required=True)
        for name in ("source_file", "source_location"):
            raw = record.get(name, "")
            values[name] = "" if raw is None else _text(index, name, raw, required=False)
        chunk_index = record.get("chunk_index", 0)
        if not isinstance(chunk_index, int) or isinstance(chunk_index, bool) or chunk_index < 0:
            raise MemoryValidationError(index, "chunk_index", f"must be a whole number 0 or more, got {chunk_index!r}")
        values["chunk_index"] = chunk_index
        for name in ("document_hash", "record_id"):
            raw = record.get(name, "")
            values[name] = "" if raw is None else _text(index, name, raw, required=False)
        return cls(**values)


def document_id(project: str, repo: str, source_file: str, record_id: str = "") -> str:
    """The stable id of a document: hex, no separators, so any tokenization filters it
    exactly. A record (a row with an id) is its document whichever file holds it."""
    if record_id:
        key = json.dumps([project, repo, {"record": record_id}], ensure_ascii=False)
    elif not source_file:
        return ""
    else:
        key = json.dumps([project, repo, source_file], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _text(index: int | None, name: str, value: Any, required: bool) -> str:
    if not isinstance(value, str):
        raise MemoryValidationError(index, name, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise MemoryValidationError(index, name, "contains a NUL character")
    if required and not value.strip():
        raise MemoryValidationError(index, name, "must not be empty")
    return value if name == "content" else value.strip()


def validate_memories(records: Sequence[Mapping[str, Any] | Memory]) -> list[Memory]:
    """Validate every record before anything is written; the first bad one raises."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValueError("memories must be a list of dicts")
    return [r if isinstance(r, Memory) else Memory.from_dict(r, i) for i, r in enumerate(records)]


def _uuid5(identity: str) -> str:
    """weaviate.util.generate_uuid5's formula (so every stored id stays what it was),
    without importing the Weaviate client into processes that only read files."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, identity))
