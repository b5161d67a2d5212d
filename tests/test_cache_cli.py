"""`python -m memsys cache ...` as an operator runs it: a real process on a real cache."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_memsys
from test_cache_health import FP, fill, nan, open_cache, other_model, overwrite_header, truncated

from memsys.ingest.readers.warmup import read_warmup_texts
from memsys.config import LOCAL_DIMENSIONS
from memsys.embeddings.cache import EmbeddingCache, make_key


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"MEMSYS_DATA_DIR": str(tmp_path / "data"), "MEMSYS_EMBEDDING_PROVIDER": "local"}


def cache_of(env: dict[str, str]) -> EmbeddingCache:
    return open_cache(Path(env["MEMSYS_DATA_DIR"]) / ".cache" / "embeddings")


def test_info_shows_entries_lifetime_lookups_size_limit_and_eviction_policy(env: dict[str, str]) -> None:
    cache = cache_of(env)
    fill(cache, 1_234)
    cache.record_lookups(30, 10)

    result = run_memsys(["cache", "info"], env)

    assert result.returncode == 0, result.stderr
    assert "1,234 cached" in result.stdout
    assert not re.search(r"\b(entries|vectors|texts|items)\b", result.stdout), result.stdout  # the glossary's words
    assert "30 hits, 10 misses (75.0% hit rate" in result.stdout
    assert "eviction policy: none" in result.stdout
    assert "64.0 GB, not enforced" in result.stdout


def test_info_as_json_carries_the_same_figures(env: dict[str, str]) -> None:
    fill(cache_of(env), 12)

    result = run_memsys(["cache", "info", "--json"], {**env, "MEMSYS_CACHE_EVICTION_POLICY": "least-recently-stored"})

    info = json.loads(result.stdout)
    assert (info["num_entries"], info["eviction_policy"], info["evicts"]) == (12, "least-recently-stored", True)


def test_check_of_a_healthy_cache_exits_zero(env: dict[str, str]) -> None:
    fill(cache_of(env), 500)

    result = run_memsys(["cache", "check"], env)

    assert result.returncode == 0, result.stderr
    assert "501 healthy, 0 bad" in result.stdout
    assert "No problems found." in result.stdout


def test_check_names_each_problem_and_exits_non_zero_without_fix(env: dict[str, str]) -> None:
    cache = cache_of(env)
    keys = fill(cache, 100)
    truncated(cache, keys[0])
    nan(cache, keys[1])
    other_model(cache, keys[2])

    result = run_memsys(["cache", "check"], env)

    assert result.returncode == 1
    for problem in ("truncated", "not_finite", "model_mismatch"):
        assert problem in result.stdout
    assert keys[0] in result.stdout
    assert "cache check --fix" in result.stdout
    assert len(cache) == 101  # nothing removed


def test_check_fix_says_what_it_removed_and_leaves_a_clean_cache(env: dict[str, str]) -> None:
    cache = cache_of(env)
    keys = fill(cache, 100)
    truncated(cache, keys[0])
    nan(cache, keys[1])

    fixed = run_memsys(["cache", "check", "--fix"], env)
    again = run_memsys(["cache", "check"], env)

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "Removed 2 cached embeddings: 1 not_finite, 1 truncated." in fixed.stdout
    assert "A second check found no problems" in fixed.stdout
    assert again.returncode == 0


def test_check_fix_rebuilds_a_database_that_cannot_open(env: dict[str, str]) -> None:
    cache = cache_of(env)
    fill(cache, 50)
    overwrite_header(cache)

    found = run_memsys(["cache", "check"], env)
    fixed = run_memsys(["cache", "check", "--fix"], env)

    assert found.returncode == 1 and "database_damaged" in found.stdout
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "rebuilt it" in fixed.stdout


def test_a_command_on_a_damaged_cache_gives_advice_not_a_traceback(env: dict[str, str]) -> None:
    cache = cache_of(env)
    fill(cache, 5)
    overwrite_header(cache)

    result = run_memsys(["cache", "info"], env)

    assert result.returncode == 2
    assert "cache check --fix" in result.stderr
    assert "Traceback" not in result.stderr


def test_warmup_embeds_each_line_once_and_a_second_run_embeds_nothing(env: dict[str, str], tmp_path: Path) -> None:
    texts = tmp_path / "common.txt"
    texts.write_text("greeting note\n\nfarewell note\ngreeting note\n", encoding="utf-8")

    first = run_memsys(["cache", "warmup", str(texts)], env)
    second = run_memsys(["cache", "warmup", str(texts)], env)

    assert first.returncode == 0, first.stderr
    assert "Warmed up 3 embeddings" in first.stdout and "2 embedded" in first.stdout
    assert "3 were already cached, 0 embedded" in second.stdout
    keys = [make_key(FP, "passage", t) for t in ("greeting note", "farewell note")]
    assert len(cache_of(env).get_many(keys, FP, LOCAL_DIMENSIONS)) == 2


def test_warmup_of_a_missing_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    result = run_memsys(["cache", "warmup", str(tmp_path / "nope.txt")], env)

    assert result.returncode == 2
    assert "nope.txt does not exist" in result.stderr


def test_a_jsonl_warmup_file_gives_the_content_or_else_the_text_field(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"content": "first"}\n\n{"text": "second", "id": 2}\n{"content": "third", "text": "ignored"}\n')

    assert list(read_warmup_texts(path)) == ["first", "second", "third"]


def test_a_jsonl_line_without_text_is_named_by_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"content": "first"}\n{"title": "no text"}\n')

    with pytest.raises(ValueError, match='line 2 has no "content" or "text"'):
        list(read_warmup_texts(path))


def test_a_jsonl_line_that_is_not_json_is_named_by_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"content": "first"}\n{"content": "unterminated\n')

    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        list(read_warmup_texts(path))


def test_clear_without_yes_removes_nothing(env: dict[str, str]) -> None:
    fill(cache_of(env), 20)

    result = run_memsys(["cache", "clear"], env)  # no terminal to ask on

    assert result.returncode == 2
    assert "would remove all 20 cached embeddings" in result.stdout and "add --yes" in result.stderr
    assert len(cache_of(env)) == 21


def test_clear_with_yes_removes_everything(env: dict[str, str]) -> None:
    fill(cache_of(env), 20)

    result = run_memsys(["cache", "clear", "--yes"], env)

    assert result.returncode == 0
    assert "Removed 21 cached embeddings" in result.stdout
    assert len(cache_of(env)) == 0
