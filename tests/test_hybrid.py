"""Hybrid search on real text (real Weaviate with its gse and kagome tokenizers, the real
local embedder): an exact term (an error code, a command, a ticket number) that search by
meaning ranks below the top 3 is found first by hybrid search, in English, Chinese and
Japanese; each hit says how it matched."""
from __future__ import annotations

from typing import Iterator

import pytest

from memsys import MemorySystem

# Office and operations notes. Each exact term (a setting, a command, a ticket number)
# appears once, in a note mainly about something else, among notes on the topic the query's
# other words name: meaning alone finds the topic, the exact term finds the note.
NOTES = [
    "The invoice export has a setting max_inflight_batches that the finance team tuned last year.",
    "Batches are sent one after another; the next starts when the previous one is confirmed.",
    "Sending many batches in parallel speeds up imports but raises the load on the database.",
    "The batch size for imports is chosen from the length of the texts.",
    "Smaller batches use less memory but take longer to import overall.",
    "The largest batch the embedding service accepts is ninety-six texts.",
    "Batch size and retries can be changed on the batch settings page.",
    "The import setting max_batch_size caps how many texts go into one batch.",
    "The import setting min_batch_size keeps batches from shrinking below ten texts.",
    "The setting max_retry_delay caps the wait between two tries of a failed batch.",
    "办公室的打印机每月由行政部检查一次，维修记录保存在 printq 系统里。",
    "打印任务排队时间过长，通常是因为打印队列里有卡住的任务。",
    "清理打印队列之前，请先确认没有正在打印的重要文件。",
    "打印队列满了以后，新的打印任务会被拒绝。",
    "打印机的队列可以在控制面板里查看和管理。",
    "開発環境の権限申請は QX-2291 に記録されています。",
    "チケット番号 QX-2219 でログの保存先が変更されました。",
    "チケット番号 QX-2921 でログの圧縮が有効になりました。",
    "チケット番号 QX-9122 でログの検索が高速化されました。",
    "チケット番号 QX-2290 でログの保存期間が六十日に短縮されました。",
    "チケット番号 QX-2292 でログの暗号化が有効になりました。",
    "チケット番号 QX-1229 でログの検索画面が追加されました。",
    "ログは三十日間保存され、その後自動的に削除されます。",
    "古いログを検索するには、アーカイブから復元する必要があります。",
]

# (query, the term only the expected note has): English, Chinese, Japanese.
EXACT_TERMS = [
    ("max_inflight_batches batches", "max_inflight_batches"),
    ("printq 打印队列", "printq"),
    ("printq 清理打印队列", "printq"),
    ("QX-2291 ログ", "QX-2291"),
    ("QX-2291 チケット", "QX-2291"),
    ("QX-2291 ログの検索", "QX-2291"),
]


@pytest.fixture(scope="module")
def notes(base_system: MemorySystem) -> Iterator[MemorySystem]:
    system = base_system.with_collection("Hybrid_notes")
    system.write_memories_batch([{"content": t, "project": "ops", "repo": "runbook", "agent": "writer", "tags": []}
                                 for t in NOTES])
    yield system
    system.store.delete_all()


def rank(system: MemorySystem, query: str, word: str, mode: str) -> int | None:
    hits = system.search_memories(query, limit=len(NOTES), mode=mode)
    return next((i + 1 for i, h in enumerate(hits) if word in h.content), None)


@pytest.mark.parametrize(("query", "word"), EXACT_TERMS)
def test_an_exact_term_is_found_first_by_hybrid_search_though_meaning_ranks_it_low(notes: MemorySystem, query: str,
                                                                                  word: str) -> None:
    vector_rank = rank(notes, query, word, "vector")
    assert vector_rank is None or vector_rank > 3
    assert rank(notes, query, word, "hybrid") == 1


def test_each_hit_says_how_it_matched(notes: MemorySystem) -> None:
    hits = notes.search_memories("printq 打印队列", limit=len(NOTES))
    assert hits[0].matched_by == "both" and "printq" in hits[0].content
    assert {h.matched_by for h in hits} >= {"both", "meaning"}
    assert {h.matched_by for h in notes.search_memories("printq", limit=2, mode="keyword")} == {"keyword"}
    assert {h.matched_by for h in notes.search_memories("printq", limit=3, mode="vector")} == {"meaning"}


def test_the_guide_s_positional_search_still_works_and_a_bad_mode_is_named(notes: MemorySystem) -> None:
    hits = notes.search_memories("batch size", 2, "ops", "runbook", "writer", None)
    assert len(hits) == 2 and all(h.project == "ops" for h in hits)
    with pytest.raises(ValueError, match="search mode must be one of hybrid, vector, keyword"):
        notes.search_memories("x", mode="fuzzy")
    with pytest.raises(ValueError, match="alpha must be a number from 0 to 1"):
        notes.search_memories("x", alpha=2)

