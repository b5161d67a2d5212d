"""Three ways of writing memories from a program rather than from files: knowledge-base
import (`Document`, `import_knowledge_base`), live conversations (`ConversationProcessor`) and multilingual
queues (`MultilingualProcessor`). Git commit analysis is in `memsys.ingest.gitlog`.

All write through a writer with the signature of `memsys.write_memories_batch` (the
default). Nothing is dropped: a batch whose write fails stays queued for the next try, and
`flush()` / `process_all_remaining()` raise `BatchesFailedError` if anything is still
unwritten after trying.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar

import memsys
from memsys.config import LOCAL_MODEL
from memsys.errors import MemoryWriteError, MemsysError
from memsys.ingest.chunking import Chunker, ChunkSettings
from memsys.models import Memory

log = logging.getLogger(__name__)

Writer = Callable[[list[dict[str, Any]]], list[str]]
T = TypeVar("T")


def default_writer() -> Writer:
    """`memsys.write_memories_batch`, looked up when first needed (it needs Weaviate)."""
    return memsys.write_memories_batch  # type: ignore[attr-defined]


# --- Failures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedBatch:
    """A batch, or the part of it, that was not written: which one, what, and why."""

    label: str  # "batch 2", "week 2024-W03", "zh"
    records: tuple[dict[str, Any], ...]
    reason: str


class BatchesFailedError(MemsysError):
    """Some batches were not written after trying them all. `written` has the UUIDs that
    were stored, `failed` the batches that were not, each with its records and reason,
    `done` how many input items (documents, commits) were written completely."""

    def __init__(self, written: list[str], failed: list[FailedBatch], done: int = 0) -> None:
        self.written = written
        self.failed = failed
        self.done = done
        records = sum(len(f.records) for f in failed)
        first = f"; first: {failed[0].label}: {failed[0].reason}" if failed else ""
        super().__init__(f"{len(failed)} batch(es) with {records} memories were not written{first}")


@dataclass(frozen=True)
class BatchWriteResult:
    """What one write did: UUIDs stored, records not stored, and why."""

    written: list[str]
    unwritten: list[dict[str, Any]]
    reason: str = ""


def write_batch(writer: Writer, records: list[dict[str, Any]]) -> BatchWriteResult:
    """Write one batch; on failure, say which records were not written and why (the
    `unwritten` list holds the very dicts passed in, so callers can match them by identity)."""
    try:
        return BatchWriteResult(list(writer(records)), [])
    except MemoryWriteError as e:
        # Partial failure: keep exactly the records whose deterministic UUID was not written.
        done = set(e.written)
        unwritten = [r for r in records if Memory.from_dict(r).uuid not in done]
        return BatchWriteResult(list(e.written), unwritten, str(e))
    except Exception as e:  # noqa: BLE001 - any failure keeps the batch; the reason is kept and raised later
        return BatchWriteResult([], records, f"{type(e).__name__}: {e}")


def _drain(queue: list[T], size: int, to_record: Callable[[T], dict[str, Any]], writer: Writer) -> tuple[list[str], str]:
    """Write `queue` `size` items at a time, removing what was written. Stops at the first
    batch that fails, whose unwritten items stay at the head of the queue, in order.
    Returns the UUIDs written and the reason of the failure ("" when none)."""
    written: list[str] = []
    while queue:
        batch = queue[:size]
        records = [to_record(item) for item in batch]
        result = write_batch(writer, records)
        written += result.written
        unwritten = {id(r) for r in result.unwritten}
        kept = [item for item, record in zip(batch, records) if id(record) in unwritten]
        queue[: len(batch)] = kept
        if kept:
            log.warning("%d items kept for the next try: %s", len(kept), result.reason)
            return written, result.reason
    return written, ""


# --- Language -------------------------------------------------------------------------------


def detect_language(text: str) -> str:
    """'ja', 'zh', 'ko' or 'en' from the script the text is written in; 'und' for other
    scripts or no letters. Any kana means Japanese (Chinese never uses kana); Latin script
    is taken as English, which is as far as script alone can tell."""
    kana = han = hangul = latin = other = 0
    for ch in text:
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
            kana += 1
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FFFF:
            han += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
            hangul += 1
        elif ch.isalpha():
            if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
                latin += 1
            else:
                other += 1
    if kana:
        return "ja"
    counts = {"zh": han, "ko": hangul, "en": latin, "und": other}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else "und"


# --- Scenario 1: knowledge-base import ----------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A knowledge-base document: its text, where it comes from and how it is filed."""

    content: str
    source_repo: str
    category: str = "general"
    language: str = ""  # detected from the text when empty
    title: str = ""  # kept as the memory's source_file, to trace a hit back


def knowledge_base_records(
    document: Document, chunker: Chunker, *, project: str = "knowledge-base", agent: str = "import-bot"
) -> list[dict[str, Any]]:
    """The memory records of a document, tagged "knowledge", its category and its language:
    one per chunk when it is longer than the model takes.
    Raises MemoryValidationError (a ValueError) for a document that cannot be a memory."""
    language = document.language or detect_language(document.content)
    base = {
        "project": project,
        "repo": document.source_repo,
        "agent": agent,
        "tags": ["knowledge", document.category, language],
        "source": "document-import",
        "source_file": document.title,
    }
    Memory.from_dict({**base, "content": document.content})
    return [
        Memory.from_dict({**base, "content": chunk.text, "chunk_index": i}).to_dict()
        for i, chunk in enumerate(chunker.split(document.content))
    ]


def import_knowledge_base(
    documents: Sequence[Document],
    *,
    batch_size: int = 50,
    writer: Writer | None = None,
    chunking: ChunkSettings | None = None,
    provider: str = "local",
    model: str = LOCAL_MODEL,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Import documents `batch_size` at a time and return how many were imported. A failing batch does not stop the others; when any
    failed, BatchesFailedError says which, after all were tried. `progress(done, total)`
    is called after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
    write = writer or default_writer()
    chunker = Chunker.for_model(provider, model, chunking)
    written: list[str] = []
    failed: list[FailedBatch] = []
    imported = 0
    for start in range(0, len(documents), batch_size):
        label = f"batch {start // batch_size + 1}"
        per_document = [knowledge_base_records(d, chunker) for d in documents[start : start + batch_size]]
        result = write_batch(write, [r for records in per_document for r in records])
        written += result.written
        if result.unwritten:
            failed.append(FailedBatch(label, tuple(result.unwritten), result.reason))
            log.warning("knowledge base %s: %d memories not written: %s", label, len(result.unwritten), result.reason)
        missing = {id(r) for r in result.unwritten}
        imported += sum(1 for records in per_document if not any(id(r) in missing for r in records))
        if progress:
            progress(imported, len(documents))
    if failed:
        raise BatchesFailedError(written, failed, imported)
    return imported


# --- Scenario 2: live conversations ----------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """A customer-support conversation: the text and the fields its memory is filed by."""

    content: str
    agent_id: str
    language: str = ""  # detected from the text when empty
    category: str = "general"
    sentiment: str = "neutral"


class ConversationProcessor:
    """Collects conversations and writes them `batch_size` at a time.

    A batch that fails stays in `pending_conversations`, in order, and is tried again with
    the next batch or `flush()`; `last_error` says why it failed. Not thread-safe: one
    processor per producer.
    """

    def __init__(
        self,
        batch_size: int = 30,
        writer: Writer | None = None,
        *,
        project: str = "customer-support",
        source: str = "live-chat",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
        self.batch_size = batch_size
        self.project = project
        self.source = source
        self.pending_conversations: list[Conversation] = []
        self.written: list[str] = []
        self.last_error: str | None = None
        self._writer = writer

    def record(self, conversation: Conversation) -> dict[str, Any]:
        """The memory record for a conversation; raises MemoryValidationError if it cannot be one."""
        language = conversation.language or detect_language(conversation.content)
        record = {
            "content": conversation.content,
            "project": self.project,
            "repo": f"conversations-{language}",
            "agent": conversation.agent_id,
            "tags": ["customer-support", conversation.category, language, conversation.sentiment],
            "source": self.source,
        }
        return Memory.from_dict(record).to_dict()

    def add_conversation(self, conversation: Conversation) -> list[str]:
        """Queue a conversation (validated now, so a bad one never blocks the queue) and
        write a batch once `batch_size` are pending. Returns the UUIDs written by this call."""
        self.record(conversation)
        self.pending_conversations.append(conversation)
        if len(self.pending_conversations) >= self.batch_size:
            return self.process_batch()
        return []

    def process_batch(self) -> list[str]:
        """Write what is pending, `batch_size` at a time, stopping at the first failure
        (that batch and the rest stay pending). Returns the UUIDs written."""
        written, reason = _drain(
            self.pending_conversations, self.batch_size, self.record, self._writer or default_writer()
        )
        self.written += written
        self.last_error = reason or None
        return written

    def flush(self) -> list[str]:
        """Write everything pending; raise BatchesFailedError if some could not be written
        (they stay pending, so a later flush can try again)."""
        written = self.process_batch()
        if self.pending_conversations:
            records = tuple(self.record(c) for c in self.pending_conversations)
            raise BatchesFailedError(written, [FailedBatch("conversations", records, self.last_error or "")])
        return written


# --- Scenario 4: multilingual queues --------------------------------------------------------------

DEFAULT_BATCH_SIZES: Mapping[str, int] = {"zh": 40, "en": 50, "ja": 30, "default": 35}


@dataclass(frozen=True)
class QueuedContent:
    content: str
    language: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class MultilingualProcessor:
    """One queue per language, each written when it reaches its language's batch size
    (by default zh 40, en 50, ja 30, otherwise 35: a script with more tokens per character
    fits fewer texts in one request). A failing batch stays queued."""

    def __init__(self, batch_sizes: Mapping[str, int] | None = None, writer: Writer | None = None) -> None:
        self.batch_sizes: dict[str, int] = {**DEFAULT_BATCH_SIZES, **(batch_sizes or {})}
        bad = {k: v for k, v in self.batch_sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"batch sizes must be whole numbers of at least 1, got {bad}")
        self.language_queues: dict[str, list[QueuedContent]] = {}
        self.written: list[str] = []
        self.last_errors: dict[str, str] = {}
        self._writer = writer

    def batch_size_for(self, language: str) -> int:
        primary = language.split("-")[0]
        return self.batch_sizes.get(language, self.batch_sizes.get(primary, self.batch_sizes["default"]))

    @staticmethod
    def record(item: QueuedContent) -> dict[str, Any]:
        """The memory record of queued content; raises MemoryValidationError if it cannot be one."""
        language = item.language
        record = {
            "content": item.content,
            "project": "multilingual-support",
            "repo": f"content-{language}",
            "agent": item.metadata.get("agent", "system"),
            "tags": ["multilingual", language, item.metadata.get("category", "general")],
            "source": f"multilingual-{language}",
        }
        return Memory.from_dict(record).to_dict()

    def add_content(
        self, content: str, language: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Queue content under its language (detected when not given) and write that
        language's batch once it is full. Returns the UUIDs written by this call."""
        language = (language or detect_language(content)).strip().lower()
        item = QueuedContent(content, language, dict(metadata or {}))
        self.record(item)
        queue = self.language_queues.setdefault(language, [])
        queue.append(item)
        if len(queue) >= self.batch_size_for(language):
            return self.process_language_batch(language)
        return []

    def process_language_batch(self, language: str) -> list[str]:
        """Write one language's queue, a batch at a time; a failing batch and the rest stay."""
        queue = self.language_queues.get(language, [])
        written, reason = _drain(queue, self.batch_size_for(language), self.record, self._writer or default_writer())
        self.written += written
        if reason:
            self.last_errors[language] = reason
        else:
            self.last_errors.pop(language, None)
        return written

    def process_all_remaining(self) -> list[str]:
        """Write every queue; raise BatchesFailedError naming the languages still queued."""
        written: list[str] = []
        for language in list(self.language_queues):
            written += self.process_language_batch(language)
        failed = [
            FailedBatch(language, tuple(self.record(i) for i in queue), self.last_errors.get(language, ""))
            for language, queue in self.language_queues.items()
            if queue
        ]
        if failed:
            raise BatchesFailedError(written, failed)
        return written

    @property
    def pending_count(self) -> int:
        return sum(len(q) for q in self.language_queues.values())

