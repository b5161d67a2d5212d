"""Browse and export past Weaviate's 10,000-result cap (a cursor, not an offset), and an
export restored into an empty collection: identical memories and vectors. The memories are
written with pre-computed vectors, so the embedder is not what the test waits for."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from memsys import MemorySystem
from memsys.engine import Engine, MemoryFilter
from memsys.models import Memory

N = 10_050  # past the cap
DIMS = 384


@pytest.fixture(scope="module")
def big(base_system: MemorySystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    system = base_system.with_collection("Big_browse")
    rng = np.random.default_rng(7)
    for start in range(0, N, 1000):
        memories = [Memory(content=f"memory number {i}", project="big", repo="r" if i % 2 else "s", agent="a",
                           tags=(f"t{i % 3}",)) for i in range(start, min(start + 1000, N))]
        vectors = rng.standard_normal((len(memories), DIMS)).astype(np.float32)
        outcome = system.store.write(memories, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        assert not outcome.failed
    engine = Engine(system.settings.replace(data_dir=tmp_path_factory.mktemp("big-data")), system=system)
    yield engine
    engine.job_store.close()
    system.store.delete_all()


def snapshot(engine: Engine) -> dict[str, tuple[str, str, tuple[str, ...], list[float] | None]]:
    return {m.uuid: (m.content, m.repo, m.tags, v) for m, v in engine.system.store.scan(include_vector=True)}


def test_browsing_pages_through_more_than_ten_thousand_memories(big: Engine) -> None:
    seen: list[str] = []
    after = None
    while True:
        page = big.memories.browse_page(after=after, limit=2000)
        seen.extend(m.uuid for m in page.memories)
        if page.next_after is None:
            break
        after = page.next_after
    assert len(seen) == len(set(seen)) == N == big.memories.count()


def test_a_filtered_browse_pages_past_the_cap_too(big: Engine) -> None:
    where = MemoryFilter(repo="r")
    first = big.memories.browse_page(where, limit=5000)
    second = big.memories.browse_page(where, after=first.next_after, limit=5000)
    assert len(first.memories) == 5000 and len(second.memories) == N // 2 - 5000 and second.next_after is None
    assert all(m.repo == "r" for m in first.memories + second.memories)
    # In uuid order, each once, and every match: Weaviate filters, memsys pages by uuid.
    paged = [m.uuid for m in first.memories + second.memories]
    assert paged == sorted(set(paged))
    assert set(paged) == {m.uuid for m, _ in big.system.store.scan() if m.repo == "r"}
    narrow = MemoryFilter(repo="r", tags=("t0",))
    pages, after = [], None
    while True:
        page = big.memories.browse_page(narrow, after=after, limit=700)
        pages.append(len(page.memories))
        if page.next_after is None:
            break
        after = page.next_after
    assert sum(pages) == len([i for i in range(N) if i % 2 and i % 3 == 0]) == big.memories.count(narrow)


def test_an_export_restored_into_an_empty_store_is_identical(big: Engine, tmp_path: Path) -> None:
    before = snapshot(big)
    out = tmp_path / "export.jsonl"
    with out.open("w", encoding="utf-8") as f:
        assert big.memories.export(f, vectors=True) == N
    partial = io.StringIO()
    assert big.memories.export(partial, MemoryFilter(tags=("t0",))) == len([i for i in range(N) if i % 3 == 0])
    big.system.store.delete_all()
    assert big.memories.count() == 0
    with out.open(encoding="utf-8") as lines:
        assert big.memories.restore(lines, actor="ops@example.com", source=out.name) == N
    assert snapshot(big) == before  # same ids, fields and vectors
    record = big.audit.records(action="memories.restored", actor="ops@example.com")[0]
    assert record.outcome == "done" and record.details == {"source": "export.jsonl", "count": N}


def test_a_restore_refuses_vectors_of_another_embedder_naming_it(big: Engine) -> None:
    line = ('{"id": null, "content": "x", "project": "p", "repo": "r", "agent": "a", "vector": [0.1, 0.2],'
            ' "embedder": "0000", "embedder_name": "openai / text-embedding-3-large"}')
    with pytest.raises(ValueError, match=r"line 1: its vector was made by openai / text-embedding-3-large, but this store embeds with local"):
        big.memories.restore([line], actor="ops@example.com")
    record = big.audit.records(action="memories.restored", actor="ops@example.com")[0]
    assert record.outcome == "refused" and record.details["count"] == 0
    assert "openai / text-embedding-3-large" in record.details["reason"]


def test_every_memory_of_a_document_is_found_however_many(base_system: MemorySystem,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-import removes the chunks a document no longer has from this list: it must not
    stop at Weaviate's result cap (pages of 100 here stand for the cap of 10,000)."""
    import memsys.store.collection

    store = base_system.with_collection("Long_document").store
    memories = [Memory(content=f"chunk {i} of a long document", project="p", repo="r", agent="a", source_file="long.md")
                for i in range(250)]
    vectors = np.random.default_rng(3).standard_normal((250, DIMS)).astype(np.float32)
    assert not store.write(memories, vectors).failed
    monkeypatch.setattr(memsys.store.collection, "MAX_RESULTS", 100)
    try:
        found = store.document_ids(memories[0].document_id)
        assert len(found) == 250 and set(found) == {m.uuid for m in memories}
    finally:
        store.delete_all()
