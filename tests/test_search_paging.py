"""Search and pages at the speed of the index, checked for what they find: hybrid and keyword
search on real English text find the memory a query is about (the keyword side searches the
content's plain words, Chinese and Japanese by gse: tests/test_hybrid.py), and a filtered
page, a document's memories and a filtered export read only their matches yet find every
one, each once, with the next page's cursor exactly when there is one."""
from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import pytest
from weaviate.classes.config import Configure, DataType, Property, Tokenization

from memsys import MemorySystem
from memsys.engine import Engine, MemoryFilter
from memsys.models import Memory
from memsys.store.collection import ADDED_WORDS_NOTE, RETURN_PROPERTIES, keyword_properties

# Real text on a few topics that share words (a river, a city, a metal, a language):
# meaning alone mixes them up, the words a query names single one out.
NOTES = [
    "The Danube flows through ten countries, more than any other river in the world.",
    "Vienna, Bratislava, Budapest and Belgrade are capital cities on the banks of the Danube.",
    "The Rhine rises in the Swiss Alps and reaches the North Sea in the Netherlands.",
    "Barges carry coal and grain along the Rhine between Basel and Rotterdam.",
    "Zirconium is a lustrous grey transition metal that resists corrosion.",
    "Titanium is as strong as some steels but much less dense.",
    "Zircon, the mineral, is a silicate of zirconium and is among the oldest minerals on Earth.",
    "Hafnium is almost always found together with zirconium in its ores.",
    "Basque is a language isolate spoken on both sides of the western Pyrenees.",
    "Finnish and Estonian are closely related Finnic languages.",
    "Hungarian belongs to the Uralic family, distantly related to Finnish.",
    "Icelandic has changed little since the sagas were written in the Middle Ages.",
    "The Rhone glacier feeds the river that flows through Lake Geneva to the Mediterranean.",
    "Copper was the first metal smelted from its ore, around 5000 BC.",
    "Lisbon was largely rebuilt after the earthquake and tsunami of 1755.",
    "The Tagus is the longest river of the Iberian Peninsula and ends at Lisbon.",
]
# (query, the note it is about): a word the note alone holds among notes on its topic.
QUERIES = [
    ("which river crosses Belgrade", "Belgrade"),
    ("Basel Rotterdam barges", "Barges"),
    ("hafnium ores", "Hafnium"),
    ("oldest mineral zircon", "Zircon, the mineral"),
    ("language isolate in the Pyrenees", "Basque"),
    ("Uralic family", "Hungarian"),
    ("Lisbon earthquake 1755", "1755"),
    ("first smelted metal", "Copper"),
]


@pytest.fixture(scope="module")
def notes(base_system: MemorySystem) -> Iterator[MemorySystem]:
    system = base_system.with_collection("Search_real_text")
    system.write_memories_batch([{"content": t, "project": "atlas", "repo": "europe", "agent": "reader", "tags": []}
                                 for t in NOTES])
    yield system
    system.store.delete_all()


def test_the_keyword_side_searches_plain_words_and_cjk_by_gse_too() -> None:
    assert keyword_properties("QX-2291 zirconium") == ["content_words"]
    assert keyword_properties("printq 打印队列") == ["content", "content_words^5"]
    assert keyword_properties("QX-2291 ログ") == ["content", "content_words^5"]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_hybrid_search_on_real_text_finds_what_the_query_is_about(notes: MemorySystem, query: str,
                                                                  expected: str) -> None:
    hits = notes.search_memories(query, limit=3)
    assert expected in hits[0].content, [h.content for h in hits]


def test_a_keyword_search_finds_whole_words_only(notes: MemorySystem) -> None:
    hits = notes.search_memories("zirconium", limit=10, mode="keyword")
    assert {h.content for h in hits} == {n for n in NOTES if "zirconium" in n.lower().replace(",", " ").split()}
    assert all(h.terms_found == ("zirconium",) for h in hits)
    assert notes.search_memories("zirc", limit=10, mode="keyword") == []


@pytest.fixture(scope="module")
def shelves(base_system: MemorySystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """90 memories: 40 on shelf "a" (two documents of 20), 50 on shelf "b"."""
    system = base_system.with_collection("Paging_shelves")
    memories = [Memory(content=f"shelf note {i}", project="shelves", repo="a" if i < 40 else "b", agent="a",
                       source_file=f"doc{i // 20}.md", chunk_index=i % 20) for i in range(90)]
    vectors = np.random.default_rng(3).standard_normal((len(memories), 384)).astype(np.float32)
    assert not system.store.write(memories, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).failed
    engine = Engine(system.settings.replace(data_dir=tmp_path_factory.mktemp("shelves-data")), system=system)
    yield engine
    engine.job_store.close()
    system.store.delete_all()


def test_a_filtered_page_says_there_is_a_next_one_exactly_when_there_is(shelves: Engine) -> None:
    where = MemoryFilter(repo="a")
    first = shelves.memories.browse_page(where, limit=20)
    second = shelves.memories.browse_page(where, after=first.next_after, limit=20)
    assert len(first.memories) == len(second.memories) == 20
    assert first.next_after == first.memories[-1].uuid and second.next_after is None  # 40 matches: two full pages
    paged = [m.uuid for m in first.memories + second.memories]
    assert paged == sorted(set(paged)) and all(m.repo == "a" for m in first.memories + second.memories)
    whole = shelves.memories.browse_page(where, limit=40)
    assert [m.uuid for m in whole.memories] == paged and whole.next_after is None
    short = shelves.memories.browse_page(where, limit=39)
    assert short.next_after == paged[38]


def test_a_filtered_export_and_a_document_s_memories_hold_every_match_once(shelves: Engine) -> None:
    out = io.StringIO()
    assert shelves.memories.export(out, MemoryFilter(repo="b")) == 50 == len(set(out.getvalue().splitlines()))
    document = shelves.memories.browse_page(MemoryFilter(source_file="doc1.md"), limit=1).memories[0].document_id
    chunks = shelves.knowledge.memories_of(document)
    assert [m.chunk_index for m in chunks] == list(range(20))
    assert shelves.memories.count(MemoryFilter(repo="a")) == 40


def test_a_collection_made_before_plain_words_keeps_finding_its_older_memories(base_system: MemorySystem) -> None:
    """memsys adds `content_words` to such a collection, marked; keywords are then searched
    in `content` too, since the memories stored before hold no plain words."""
    client = base_system.store.client
    name = "Search_before_words"
    client.collections.delete(name)
    texts = [p for p in RETURN_PROPERTIES if p not in ("chunk_index", "created_at", "tags")]
    client.collections.create(name, vector_config=Configure.Vectors.self_provided(), properties=[
        *(Property(name=p, data_type=DataType.TEXT, tokenization=Tokenization.WORD if p == "content" else
                   Tokenization.FIELD) for p in texts),
        Property(name="tags", data_type=DataType.TEXT_ARRAY), Property(name="chunk_index", data_type=DataType.INT),
        Property(name="created_at", data_type=DataType.DATE)])
    old = Memory(content="Zirconium resists corrosion.", project="p", repo="r", agent="a")
    client.collections.get(name).data.insert(old.properties(), uuid=old.uuid, vector=[1.0] + [0.0] * 383)
    store = base_system.store.with_collection(name, physical=True)
    try:
        hits = store.search(None, limit=5, text="zirconium", mode="keyword")
        assert [h.uuid for h in hits] == [old.uuid]
        words = next(p for p in store.collection.config.get().properties if p.name == "content_words")
        assert words.description == ADDED_WORDS_NOTE
    finally:
        client.collections.delete(name)
