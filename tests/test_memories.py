"""The seed's write and search API on real embedded Weaviate and the real local embedder."""
from __future__ import annotations

import numpy as np
import pytest

import memsys
from memsys import MemorySystem, MemoryWriteError
from memsys.embeddings.router import EmbeddingRouter


def record(content: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"content": content, "project": "proj", "repo": "main", "agent": "dev", "tags": ["t1"]}
    base.update(overrides)
    return base


def test_write_memories_batch_returns_one_uuid_per_record_in_order(memsys_system: MemorySystem) -> None:
    uuids = memsys.write_memories_batch([record("实现了新功能"), record("修复了bug", tags=["bugfix"])])
    assert len(uuids) == 2 and uuids[0] != uuids[1]
    assert memsys.get_memory(uuids[0]).content == "实现了新功能"  # type: ignore[union-attr]
    assert memsys.get_memory(uuids[1]).content == "修复了bug"  # type: ignore[union-attr]


def test_write_memory_stores_every_field_with_source_defaulting_to_agent(memsys_system: MemorySystem) -> None:
    uuid = memsys.write_memory(content="deployed v2", project="p", repo="r", agent="ops", tags=["deploy", "prod"])
    stored = memsys.get_memory(uuid)
    assert stored is not None
    assert (stored.project, stored.repo, stored.agent, stored.tags, stored.source) == ("p", "r", "ops", ("deploy", "prod"), "agent")
    assert stored.created_at is not None
    assert len(stored.content_hash) == 64


def test_the_same_memory_written_twice_is_stored_once(memsys_system: MemorySystem) -> None:
    first = memsys.write_memories_batch([record("only once")])
    second = memsys.write_memories_batch([record("only once")])
    assert first == second
    assert memsys.count_memories() == 1


def test_the_same_memory_twice_in_one_call_is_stored_once(memsys_system: MemorySystem) -> None:
    uuids = memsys.write_memories_batch([record("twice here"), record("twice here")])
    assert uuids[0] == uuids[1]
    assert memsys.count_memories() == 1


def test_changed_tags_update_the_memory_in_place(memsys_system: MemorySystem) -> None:
    uuid = memsys.write_memories_batch([record("retagged", tags=["old"])])[0]
    again = memsys.write_memories_batch([record("retagged", tags=["new"])])[0]
    assert again == uuid
    assert memsys.get_memory(uuid).tags == ("new",)  # type: ignore[union-attr]
    assert memsys.count_memories() == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (record(""), r"memory #1: field 'content' must not be empty"),
        (record("x", project=None), r"memory #1: field 'project' is missing"),
        (record("x", repo=7), r"memory #1: field 'repo' must be a string, got int"),
        (record("x", tags="not-a-list"), r"memory #1: field 'tags' must be a list of strings"),
        (record("x", tags=["ok", 3]), r"memory #1: field 'tags' item 1 must be a string"),
        (record("x", colour="blue"), r"memory #1: field 'colour' is not a memory field"),
    ],
)
def test_a_bad_record_is_named_and_nothing_is_written(memsys_system: MemorySystem, bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        memsys.write_memories_batch([record("good one"), bad])
    assert memsys.count_memories() == 0


def test_count_memories_filters_by_project(memsys_system: MemorySystem) -> None:
    memsys.write_memories_batch([record("a", project="alpha"), record("b", project="alpha"), record("c", project="beta")])
    assert memsys.count_memories() == 3
    assert memsys.count_memories(project="alpha") == 2


SEARCH_CORPUS = [
    "Python编程指南：如何使用列表推导式",
    "今天的天气非常好，适合去公园散步",
    "東京タワーは東京の観光名所です",
    "ラーメンの作り方を説明します",
    "The quarterly revenue grew by twelve percent",
    "How to replace a flat bicycle tire",
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("怎样用Python写列表推导式", SEARCH_CORPUS[0]),
        ("东京的观光地", SEARCH_CORPUS[2]),
        ("ラーメンのレシピ", SEARCH_CORPUS[3]),
        ("fixing a punctured bike wheel", SEARCH_CORPUS[5]),
        ("company sales growth", SEARCH_CORPUS[4]),
    ],
)
def test_search_finds_the_right_memory_first(memsys_system: MemorySystem, query: str, expected: str) -> None:
    memsys.write_memories_batch([record(text) for text in SEARCH_CORPUS])
    hits = memsys.search_memories(query, limit=3)
    assert hits[0].content == expected
    assert hits[0].score is not None and hits[0].score > hits[1].score  # type: ignore[operator]


def test_search_filters_by_tags_matching_any(memsys_system: MemorySystem) -> None:
    memsys.write_memories_batch(
        [record("red apple", tags=["fruit"]), record("green pear", tags=["fruit", "green"]), record("red car", tags=["vehicle"])]
    )
    hits = memsys.search_memories("red", tags=["vehicle", "green"])
    assert {h.content for h in hits} == {"green pear", "red car"}


def test_search_filters_by_project_repo_and_agent(memsys_system: MemorySystem) -> None:
    memsys.write_memories_batch([record("deploy notes", agent="ops"), record("deploy notes", agent="dev"), record("deploy notes", project="other")])
    hits = memsys.search_memories("deploy", project="proj", repo="main", agent="ops")
    assert [(h.project, h.agent) for h in hits] == [("proj", "ops")]


def test_a_partial_failure_carries_written_uuids_and_failed_records(memsys_system: MemorySystem) -> None:
    memsys.write_memories_batch([record("establishes the vector size")])
    store = memsys_system.store
    good, bad = memsys.Memory(**record("good one", tags=("t1",))), memsys.Memory(**record("bad one", tags=("t1",)))
    vectors = memsys_system.router.embed([good.content, bad.content]).vectors.tolist()
    vectors[1] = vectors[1][:10]
    outcome = store.write([good, bad], vectors)
    assert outcome.written == [good.uuid]
    assert list(outcome.failed) == [1] and outcome.failed[1]
    assert store.get(bad.uuid) is None


def test_write_memories_batch_raises_memory_write_error_on_partial_failure(memsys_system: MemorySystem) -> None:
    memsys.write_memories_batch([record("establishes the vector size")])

    system = MemorySystem(memsys_system.settings, router=memsys_system.router, store=memsys_system.store)
    original_write = system.store.write

    def write_with_one_short_vector(batch, vectors, created_at=None):  # type: ignore[no-untyped-def]
        vecs = [list(v) for v in vectors]
        vecs[1] = vecs[1][:10]
        return original_write(batch, vecs, created_at=created_at)

    system.store.write = write_with_one_short_vector  # type: ignore[method-assign]
    try:
        with pytest.raises(MemoryWriteError) as info:
            system.write_memories_batch([record("fine"), record("refused"), record("also fine")])
    finally:
        del system.store.write
    err = info.value
    assert len(err.written) == 2
    assert [(f.index, f.record["content"]) for f in err.failed] == [(1, "refused")]
    assert err.failed[0].reason
    assert memsys.count_memories() == 3  # the first write plus two of three


def test_embed_text_matches_the_batch(memsys_system: MemorySystem) -> None:
    single = memsys.embed_text("同一段文本")
    batch = memsys.embed_texts_batch(["other", "同一段文本"])
    assert np.allclose(single, batch[1], atol=1e-6)
    assert isinstance(memsys_system.router, EmbeddingRouter)
