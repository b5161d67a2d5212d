"""The seed's scenarios as library code: knowledge-base import, the conversation processor
and the multilingual queues. Most tests write through a small recording writer (a plain
function that keeps what it got, and can be told to fail); the last ones write for real
into Weaviate through `memsys.write_memories_batch`."""
from __future__ import annotations

from typing import Any

import pytest

from memsys.errors import FailedMemory, MemoryWriteError
from memsys.ingest import (
    BatchesFailedError,
    Conversation,
    ConversationProcessor,
    Document,
    MultilingualProcessor,
    detect_language,
    import_knowledge_base,
)
from memsys.models import Memory, MemoryValidationError
from recording_writer import RecordingWriter


def half_writer(records: list[dict[str, Any]]) -> list[str]:
    """Writes the first half of a batch, then fails the rest as the store reports it."""
    half = len(records) // 2
    written = [Memory.from_dict(r).uuid for r in records[:half]]
    failed = [FailedMemory(i, Memory.from_dict(r).uuid, r, "object too large") for i, r in enumerate(records) if i >= half]
    raise MemoryWriteError(written, failed)


def conversation(i: int, language: str = "en") -> Conversation:
    return Conversation(content=f"Customer {i} asked about a refund.", agent_id=f"agent-{i % 3}",
                        language=language, category="billing", sentiment="neutral")


# --- Language detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, language",
    [
        ("你好，我需要帮助", "zh"),
        ("こんにちは、質問があります", "ja"),
        ("会議の記録です", "ja"),
        ("안녕하세요, 질문이 있습니다", "ko"),
        ("Hello, I have a question", "en"),
        ("Привет, у меня вопрос", "und"),
        ("12345 !!!", "und"),
    ],
)
def test_language_is_detected_from_the_script(text: str, language: str) -> None:
    assert detect_language(text) == language


# --- Scenario 1: knowledge base -------------------------------------------------------------------


def test_knowledge_base_documents_become_the_seeds_records() -> None:
    writer = RecordingWriter()
    count = import_knowledge_base(
        [Document(content="Python编程指南：变量和函数。", source_repo="docs", category="programming", language="zh")],
        writer=writer,
    )
    assert count == 1
    assert writer.batches == [[{
        "content": "Python编程指南：变量和函数。", "project": "knowledge-base", "repo": "docs", "agent": "import-bot",
        "tags": ["knowledge", "programming", "zh"], "source": "document-import",
        "source_file": "", "source_location": "", "chunk_index": 0,
    }]]


def test_knowledge_base_language_is_detected_when_not_given() -> None:
    writer = RecordingWriter()
    import_knowledge_base([Document(content="API reference for the search endpoint.", source_repo="api")], writer=writer)
    assert writer.batches[0][0]["tags"] == ["knowledge", "general", "en"]


def test_knowledge_base_is_written_fifty_documents_at_a_time() -> None:
    writer = RecordingWriter()
    documents = [Document(content=f"Document {i} body.", source_repo="docs") for i in range(120)]
    assert import_knowledge_base(documents, writer=writer) == 120
    assert [len(b) for b in writer.batches] == [50, 50, 20]


def test_long_knowledge_base_document_is_chunked_into_numbered_memories() -> None:
    writer = RecordingWriter()
    body = " ".join(f"Section {i} explains one more detail of the system." for i in range(200))
    import_knowledge_base([Document(content=body, source_repo="docs", title="manual.md")], writer=writer)
    records = writer.batches[0]
    assert len(records) > 2
    assert [r["chunk_index"] for r in records] == list(range(len(records)))
    assert all(r["source_file"] == "manual.md" for r in records)


def test_failing_knowledge_base_batch_does_not_stop_the_others_and_is_reported() -> None:
    writer = RecordingWriter(failing_calls=(2,))
    documents = [Document(content=f"Document {i} body.", source_repo="docs") for i in range(120)]
    with pytest.raises(BatchesFailedError) as caught:
        import_knowledge_base(documents, writer=writer)
    error = caught.value
    assert error.done == 70
    assert len(error.written) == 70
    assert [(f.label, len(f.records)) for f in error.failed] == [("batch 2", 50)]
    assert "ConnectionError: Weaviate is not reachable" in error.failed[0].reason
    assert error.failed[0].records[0]["content"] == "Document 50 body."


def test_knowledge_base_document_without_content_is_refused_before_writing() -> None:
    writer = RecordingWriter()
    with pytest.raises(MemoryValidationError, match="field 'content' must not be empty"):
        import_knowledge_base([Document(content="  ", source_repo="docs")], writer=writer)
    assert writer.calls == 0


# --- Scenario 2: conversations ------------------------------------------------------------------


def test_conversations_are_written_automatically_when_the_batch_is_full() -> None:
    writer = RecordingWriter()
    processor = ConversationProcessor(writer=writer)
    for i in range(29):
        processor.add_conversation(conversation(i))
    assert writer.calls == 0
    uuids = processor.add_conversation(conversation(29))
    assert [len(b) for b in writer.batches] == [30]
    assert len(uuids) == 30
    assert processor.pending_conversations == []


def test_conversation_becomes_the_seeds_record() -> None:
    writer = RecordingWriter()
    processor = ConversationProcessor(writer=writer)
    processor.add_conversation(Conversation("我的订单还没到。", agent_id="agent-7", category="shipping", sentiment="negative"))
    processor.flush()
    assert writer.batches == [[{
        "content": "我的订单还没到。", "project": "customer-support", "repo": "conversations-zh", "agent": "agent-7",
        "tags": ["customer-support", "shipping", "zh", "negative"], "source": "live-chat",
        "source_file": "", "source_location": "", "chunk_index": 0,
    }]]


def test_flush_writes_what_is_left() -> None:
    writer = RecordingWriter()
    processor = ConversationProcessor(writer=writer)
    for i in range(35):
        processor.add_conversation(conversation(i))
    processor.flush()
    assert [len(b) for b in writer.batches] == [30, 5]
    assert processor.pending_conversations == []


def test_failing_batch_keeps_its_conversations_for_the_next_try() -> None:
    writer = RecordingWriter(failing_calls=(1,))
    processor = ConversationProcessor(batch_size=3, writer=writer)
    for i in range(3):
        processor.add_conversation(conversation(i))
    assert processor.pending_conversations == [conversation(i) for i in range(3)]
    assert processor.last_error == "ConnectionError: Weaviate is not reachable"
    processor.flush()
    assert writer.contents == [conversation(i).content for i in range(3)]
    assert processor.pending_conversations == []
    assert processor.last_error is None


def test_partly_written_batch_keeps_only_the_unwritten_conversations() -> None:
    processor = ConversationProcessor(batch_size=4, writer=half_writer)
    for i in range(4):
        processor.add_conversation(conversation(i))
    assert processor.pending_conversations == [conversation(2), conversation(3)]
    assert len(processor.written) == 2


def test_flush_that_still_fails_raises_and_keeps_the_conversations() -> None:
    writer = RecordingWriter(failing_calls=(1,))
    processor = ConversationProcessor(writer=writer)
    processor.add_conversation(conversation(1))
    with pytest.raises(BatchesFailedError, match="1 memories were not written") as caught:
        processor.flush()
    assert caught.value.failed[0].records[0]["content"] == conversation(1).content
    assert processor.pending_conversations == [conversation(1)]


def test_invalid_conversation_is_refused_at_once_and_does_not_block_the_queue() -> None:
    processor = ConversationProcessor(writer=RecordingWriter())
    with pytest.raises(MemoryValidationError, match="field 'agent' must not be empty"):
        processor.add_conversation(Conversation("Hello", agent_id=""))
    assert processor.pending_conversations == []


# --- Scenario 4: multilingual queues ------------------------------------------------------------


@pytest.mark.parametrize("language, size", [("zh", 40), ("en", 50), ("ja", 30), ("fr", 35)])
def test_each_language_is_written_at_its_own_batch_size(language: str, size: int) -> None:
    writer = RecordingWriter()
    processor = MultilingualProcessor(writer=writer)
    for i in range(size - 1):
        processor.add_content(f"content {i}", language, {})
    assert writer.calls == 0
    processor.add_content(f"content {size - 1}", language, {})
    assert [len(b) for b in writer.batches] == [size]


def test_multilingual_content_becomes_the_seeds_record() -> None:
    writer = RecordingWriter()
    processor = MultilingualProcessor(writer=writer)
    processor.add_content("こんにちは、質問があります", "ja", {"agent": "agent-03", "category": "question"})
    processor.process_all_remaining()
    assert writer.batches == [[{
        "content": "こんにちは、質問があります", "project": "multilingual-support", "repo": "content-ja",
        "agent": "agent-03", "tags": ["multilingual", "ja", "question"], "source": "multilingual-ja",
        "source_file": "", "source_location": "", "chunk_index": 0,
    }]]


def test_content_without_a_language_is_queued_under_the_detected_one() -> None:
    processor = MultilingualProcessor(writer=RecordingWriter())
    processor.add_content("你好，我需要帮助")
    processor.add_content("Hello, I have a question")
    assert {lang: len(q) for lang, q in processor.language_queues.items()} == {"zh": 1, "en": 1}


def test_process_all_remaining_writes_every_queue() -> None:
    writer = RecordingWriter()
    processor = MultilingualProcessor(writer=writer)
    for content, lang in [("你好", "zh"), ("Hello", "en"), ("こんにちは", "ja"), ("Bonjour", "fr")]:
        processor.add_content(content, lang, {"agent": "a"})
    processor.process_all_remaining()
    assert sorted(writer.contents) == sorted(["你好", "Hello", "こんにちは", "Bonjour"])
    assert processor.pending_count == 0


def test_failing_language_batch_stays_queued_while_the_others_are_written() -> None:
    writer = RecordingWriter(failing_calls=(1,))
    processor = MultilingualProcessor(writer=writer)
    processor.add_content("你好", "zh", {})
    processor.add_content("Hello", "en", {})
    with pytest.raises(BatchesFailedError) as caught:
        processor.process_all_remaining()
    assert [f.label for f in caught.value.failed] == ["zh"]
    assert writer.contents == ["Hello"]
    assert [i.content for i in processor.language_queues["zh"]] == ["你好"]
    processor.process_all_remaining()
    assert writer.contents == ["Hello", "你好"]


def test_custom_batch_sizes_override_the_seeds() -> None:
    writer = RecordingWriter()
    processor = MultilingualProcessor(batch_sizes={"en": 2}, writer=writer)
    processor.add_content("one", "en", {})
    processor.add_content("two", "en", {})
    assert [len(b) for b in writer.batches] == [2]


# --- For real: Weaviate and the local embedder --------------------------------------------------


def test_conversations_flushed_through_memsys_are_stored_and_searchable(memsys_system: Any) -> None:
    processor = ConversationProcessor(batch_size=2)
    processor.add_conversation(Conversation("The customer wants a refund for a broken kettle.", agent_id="agent-1"))
    processor.add_conversation(Conversation("The customer asks when the store opens on Sunday.", agent_id="agent-2"))
    processor.add_conversation(Conversation("我想修改我的送货地址。", agent_id="agent-3"))
    processor.flush()
    assert memsys_system.count_memories(project="customer-support") == 3
    hit = memsys_system.search_memories("refund for a kettle", limit=1)[0]
    assert (hit.agent, hit.repo) == ("agent-1", "conversations-en")


def test_knowledge_base_import_through_memsys_stores_every_chunk(memsys_system: Any) -> None:
    body = " ".join(f"Rule {i}: keep the cache warm before a large import." for i in range(60))
    documents = [Document(content=body, source_repo="handbook", title="ops.md"),
                 Document(content="Weaviate runs embedded by default.", source_repo="handbook", category="setup")]
    assert import_knowledge_base(documents) == 2
    stored = memsys_system.count_memories(project="knowledge-base")
    assert stored > 2
    hit = memsys_system.search_memories("embedded Weaviate", limit=1)[0]
    assert hit.tags == ("knowledge", "setup", "en")
