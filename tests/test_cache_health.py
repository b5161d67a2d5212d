"""The cache health check and repair, against real corruption made on a real cache: each
kind is found and named, healthy entries are never flagged, a fix leaves a cache that
checks clean, and the next import re-embeds exactly what the fix removed."""
from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from helpers import CountingLocalProvider

from memsys import EmbeddingRouter, Settings
from memsys.config import LOCAL_DIMENSIONS, LOCAL_MODEL
from memsys.embeddings.cache import CacheDamagedError, EmbeddingCache, ModelInfo, encode_vector, make_key
from memsys.embeddings.providers import LocalProvider
from memsys.retry import RetryPolicy

FP = LocalProvider().fingerprint
OTHER_FP = "0123456789abcdef"
FILE_BACKED = 1024  # min_file_size below a 384-float vector's 1,560 bytes: every value is a file


def open_cache(path: Path, min_file_size: int = 2**15) -> EmbeddingCache:
    return EmbeddingCache(path, min_file_size=min_file_size)


def fill(cache: EmbeddingCache, n: int, seed: int = 0) -> list[str]:
    """n healthy entries of the local model, written directly; returns their keys."""
    cache.register_model(ModelInfo(FP, "local", LOCAL_MODEL, "", LOCAL_DIMENSIONS))
    keys = [make_key(FP, "passage", f"healthy text {seed}-{i}") for i in range(n)]
    vectors = np.random.default_rng(seed).standard_normal((n, LOCAL_DIMENSIONS)).astype(np.float32)
    cache.set_many(zip(keys, vectors), FP)
    return keys


def router_on(cache: EmbeddingCache, provider: LocalProvider | None = None) -> EmbeddingRouter:
    settings = Settings(data_dir=cache.directory.parent)
    return EmbeddingRouter(settings, provider=provider or LocalProvider(), cache=cache, retry=RetryPolicy(0))


def stored(cache: EmbeddingCache, key: str) -> bytes:
    value = cache.diskcache.get(key)
    assert isinstance(value, bytes)
    return value


def value_file(cache: EmbeddingCache, key: str) -> Path:
    (filename,) = cache.diskcache._sql("SELECT filename FROM Cache WHERE key = ?", (key,)).fetchone()
    assert filename, "the value is stored inline, not in a file"
    return cache.directory / filename


# --- the ways a cache entry goes bad: each damages `key` and names the expected problem ---

def truncated(cache: EmbeddingCache, key: str) -> str:
    cache.diskcache.set(key, stored(cache, key)[:1000])
    return "truncated"


def random_bytes(cache: EmbeddingCache, key: str) -> str:
    cache.diskcache.set(key, np.random.default_rng(1).bytes(len(stored(cache, key))))
    return "bad_header"


def wrong_dimension(cache: EmbeddingCache, key: str) -> str:
    cache.diskcache.set(key, encode_vector(np.ones(128, dtype=np.float32), FP))
    return "wrong_dimension"


def nan(cache: EmbeddingCache, key: str) -> str:
    vector = np.ones(LOCAL_DIMENSIONS, dtype=np.float32)
    vector[17] = np.nan
    cache.diskcache.set(key, encode_vector(vector, FP))
    return "not_finite"


def infinity(cache: EmbeddingCache, key: str) -> str:
    vector = np.ones(LOCAL_DIMENSIONS, dtype=np.float32)
    vector[-1] = -np.inf
    cache.diskcache.set(key, encode_vector(vector, FP))
    return "not_finite"


def other_model(cache: EmbeddingCache, key: str) -> str:
    # A stale vector from another model, under this model's key (same size, so only the
    # header's model fingerprint tells them apart).
    cache.diskcache.set(key, encode_vector(np.ones(LOCAL_DIMENSIONS, dtype=np.float32), OTHER_FP))
    return "model_mismatch"


def deleted_file(cache: EmbeddingCache, key: str) -> str:
    value_file(cache, key).unlink()
    return "missing_file"


def garbage_file(cache: EmbeddingCache, key: str) -> str:
    path = value_file(cache, key)
    path.write_bytes(np.random.default_rng(2).bytes(path.stat().st_size + 40))
    return "bad_header"


CORRUPTIONS: dict[str, Callable[[EmbeddingCache, str], str]] = {
    f.__name__: f
    for f in (truncated, random_bytes, wrong_dimension, nan, infinity, other_model, deleted_file, garbage_file)
}


def damage_page_holding(cache: EmbeddingCache, key: str) -> None:
    """Close the cache and overwrite the header of the SQLite page that holds `key`'s value."""
    needle = stored(cache, key)[24:88]
    cache.close()
    db = cache.database_path
    data = db.read_bytes()
    at = data.find(needle)
    assert at > 0
    page_size = int.from_bytes(data[16:18], "big")
    page = at - at % page_size
    with db.open("r+b") as f:
        f.seek(page)
        f.write(np.random.default_rng(3).bytes(64))


def overwrite_header(cache: EmbeddingCache) -> None:
    """Close the cache and destroy its database's header: SQLite no longer opens the file."""
    cache.close()
    with cache.database_path.open("r+b") as f:
        f.write(b"this is not an SQLite header at all")


def damage_middle(db: Path) -> None:
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 2)
        f.write(np.random.default_rng(4).bytes(4096))


# --- finding -------------------------------------------------------------------------

@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_each_kind_of_corruption_is_found_and_named(tmp_path: Path, corrupt: Callable[[EmbeddingCache, str], str]) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 50)
    problem = corrupt(cache, keys[20])

    report = router_on(cache).check_cache()

    assert [(e.key, e.problem) for e in report.bad_entries] == [(keys[20], problem)]
    assert report.healthy == 50  # 49 vectors and the model record
    assert not report.ok


def test_a_deleted_value_file_is_also_reported_by_diskcaches_own_check(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 10)
    deleted_file(cache, keys[3])

    report = router_on(cache).check_cache()

    # The file was alone in its folder, so diskcache also finds that folder empty.
    assert sorted(p.problem for p in report.database_problems) == ["empty_directory", "missing_file"]


def test_a_value_file_of_the_wrong_size_is_reported_by_diskcaches_own_check(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 10)
    garbage_file(cache, keys[3])

    report = router_on(cache).check_cache()

    assert [p.problem for p in report.database_problems] == ["wrong_file_size"]


def test_a_damaged_sqlite_page_is_reported_with_the_entries_it_holds(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 300)
    damage_page_holding(cache, keys[150])

    report = router_on(open_cache(tmp_path / "cache")).check_cache()

    assert report.database_damaged
    unreadable = {e.key for e in report.bad_entries if e.problem == "unreadable_row"}
    assert keys[150] in unreadable
    assert len(unreadable) < 10  # one page's worth, not the whole cache
    assert report.healthy == 301 - len(unreadable)


def test_a_database_that_cannot_even_open_is_reported(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 20)
    overwrite_header(cache)

    broken = open_cache(tmp_path / "cache")
    report = router_on(broken).check_cache()

    assert broken.open_error is not None
    assert report.database_damaged
    assert not report.ok


def test_a_damaged_database_makes_lookups_fail_with_advice_not_a_traceback(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 20)
    overwrite_header(cache)

    with pytest.raises(CacheDamagedError, match="cache check --fix"):
        router_on(open_cache(tmp_path / "cache")).embed(["anything"])


def test_thousands_of_healthy_entries_are_never_flagged(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 10_000)
    cache.record_lookups(5, 3)

    report = router_on(cache).check_cache()

    assert report.ok, report.problem_counts()
    assert report.checked == report.healthy == 10_003  # vectors, model record, two counters


def test_thousands_of_healthy_file_backed_entries_are_never_flagged(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    fill(cache, 3_000)

    report = router_on(cache).check_cache()

    assert report.ok, report.problem_counts()
    assert report.healthy == 3_001


def test_all_eight_kinds_are_found_among_ten_thousand_healthy_entries(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 10_008)
    victims = dict(zip(keys[::1251], CORRUPTIONS.values()))
    expected = {key: corrupt(cache, key) for key, corrupt in victims.items()}

    report = router_on(cache).check_cache()

    assert {e.key: e.problem for e in report.bad_entries} == expected
    assert report.healthy == 10_001


def test_entries_of_other_models_are_checked_against_their_own_size(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 5)
    cache.register_model(ModelInfo(OTHER_FP, "openai", "text-embedding-3-small", "", 8))
    good, bad = make_key(OTHER_FP, "passage", "a"), make_key(OTHER_FP, "passage", "b")
    cache.set_many([(good, np.ones(8)), (bad, np.ones(9))], OTHER_FP)

    report = router_on(cache).check_cache()

    assert [(e.key, e.problem) for e in report.bad_entries] == [(bad, "wrong_dimension")]


def test_entries_memsys_never_writes_are_named(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 5)
    cache.diskcache.set("somebody:else", b"x")
    cache.diskcache.set(make_key(FP, "passage", "x")[:-3], encode_vector(np.ones(LOCAL_DIMENSIONS), FP))
    cache.diskcache.set("model:" + OTHER_FP, b"{not json")
    cache.diskcache.set("stats:hits", "many")

    report = router_on(cache).check_cache()

    assert sorted(e.problem for e in report.bad_entries) == ["bad_key", "bad_model_record", "bad_statistic", "unknown_key"]


def test_progress_is_reported_up_to_the_total(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 2_500)
    calls: list[tuple[int, int]] = []

    router_on(cache).check_cache(progress=lambda checked, total: calls.append((checked, total)))

    assert len(calls) >= 3
    assert [c for c, _ in calls] == sorted(c for c, _ in calls)
    assert calls[-1] == (2_501, 2_501)


def test_the_check_reads_the_cache_in_chunks_not_all_at_once(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 10_000)
    router = router_on(cache)
    tracemalloc.start()
    try:
        router.check_cache()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < cache.volume() / 4, f"peak {peak} bytes for a {cache.volume()}-byte cache"


# --- repairing -------------------------------------------------------------------------

@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_fix_removes_each_kind_and_a_second_check_is_clean(tmp_path: Path, corrupt: Callable[[EmbeddingCache, str], str]) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 50)
    problem = corrupt(cache, keys[20])
    router = router_on(cache)

    fixed = router.check_cache(fix=True)
    again = router.check_cache()

    assert [(e.key, e.problem) for e in fixed.removed] == [(keys[20], problem)]
    assert again.ok, (again.bad_entries, again.database_problems)
    assert again.healthy == 50
    assert keys[20] not in cache.diskcache


def test_fix_leaves_healthy_entries_alone(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 200)
    before = {k: stored(cache, k) for k in keys}
    truncated(cache, keys[0])

    router_on(cache).check_cache(fix=True)

    assert {k: stored(cache, k) for k in keys[1:]} == {k: before[k] for k in keys[1:]}


def test_fix_of_a_healthy_cache_changes_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 100)

    report = router_on(cache).check_cache(fix=True)

    assert report.ok and not report.removed and not report.rebuilt
    assert len(cache) == 101


def test_fix_removes_stray_files_diskcache_does_not_know(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    fill(cache, 10)
    stray = cache.directory / "ab" / "cd" / "stray.val"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left behind")
    router = router_on(cache)

    found = router.check_cache(fix=True)
    again = router.check_cache()

    assert [p.problem for p in found.database_problems] == ["unknown_file"]
    assert not stray.exists()
    assert again.ok


def test_fix_rebuilds_a_database_with_a_damaged_page_keeping_every_readable_entry(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 300)
    damage_page_holding(cache, keys[150])
    reopened = open_cache(tmp_path / "cache")
    router = router_on(reopened)

    fixed = router.check_cache(fix=True)
    again = router.check_cache()

    assert fixed.rebuilt
    assert keys[150] in fixed.removed_keys()
    assert fixed.kept + len(fixed.removed) == 301
    assert again.ok, (again.bad_entries, again.database_problems)
    assert len(reopened.get_many(keys, FP, LOCAL_DIMENSIONS)) == 300 - len(fixed.removed_keys() & set(keys))


def test_fix_recovers_a_usable_cache_after_damage_in_the_middle_of_the_file(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 5_000)
    cache.close()
    damage_middle(cache.database_path)
    router = router_on(open_cache(tmp_path / "cache"))

    found = router.check_cache()
    fixed = router.check_cache(fix=True)
    again = router.check_cache()

    assert found.database_damaged
    assert fixed.rebuilt and fixed.kept > 0
    assert again.ok, (again.bad_entries, again.database_problems)
    kept = router.cache.get_many(keys, FP, LOCAL_DIMENSIONS)
    assert set(kept) == set(keys) - fixed.removed_keys()


def test_fix_rebuilds_a_database_that_cannot_open_into_an_empty_usable_cache(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    fill(cache, 20)
    overwrite_header(cache)
    broken = open_cache(tmp_path / "cache")
    router = router_on(broken)

    fixed = router.check_cache(fix=True)
    again = router.check_cache()

    assert fixed.rebuilt
    assert broken.open_error is None
    assert again.ok
    broken.set_many([(make_key(FP, "passage", "new"), np.ones(LOCAL_DIMENSIONS))], FP)
    assert len(broken.get_many([make_key(FP, "passage", "new")], FP, LOCAL_DIMENSIONS)) == 1


def test_another_cache_object_on_the_same_directory_follows_a_rebuild(tmp_path: Path) -> None:
    # Two objects with their own connections stand for two processes sharing the cache.
    first = open_cache(tmp_path / "cache")
    keys = fill(first, 300)
    damage_page_holding(first, keys[150])
    repairer, other = open_cache(tmp_path / "cache"), open_cache(tmp_path / "cache")

    router_on(repairer).check_cache(fix=True)
    new_key = make_key(FP, "passage", "written after the rebuild")
    other.set_many([(new_key, np.ones(LOCAL_DIMENSIONS))], FP)

    assert new_key in repairer.get_many([new_key], FP, LOCAL_DIMENSIONS)
    assert router_on(repairer).check_cache().ok


# --- the next import re-embeds exactly what was removed -----------------------------------

TEXTS = [f"note {i} on the cache" for i in range(24)]


def test_after_a_fix_the_next_import_re_embeds_exactly_the_removed_entries(tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    router = router_on(cache, provider)
    router.embed(TEXTS)
    keys = {make_key(FP, "passage", t): t for t in TEXTS}
    victims = dict(zip(list(keys)[::3], CORRUPTIONS.values()))
    for key, corrupt in victims.items():
        corrupt(cache, key)
    provider.calls.clear()

    fixed = router.check_cache(fix=True)
    result = router.embed(TEXTS)

    assert fixed.removed_keys() == set(victims)
    assert sorted(provider.sent) == sorted(keys[k] for k in victims)
    assert result.embedded == len(victims)


def test_after_rebuilding_a_damaged_page_the_next_import_re_embeds_exactly_the_lost_entries(tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    cache = open_cache(tmp_path / "cache")
    router = router_on(cache, provider)
    router.embed(TEXTS)
    keys = {make_key(FP, "passage", t): t for t in TEXTS}
    damage_page_holding(cache, make_key(FP, "passage", TEXTS[12]))
    router = router_on(open_cache(tmp_path / "cache"), provider)
    provider.calls.clear()

    fixed = router.check_cache(fix=True)
    router.embed(TEXTS)

    lost = fixed.removed_keys() & set(keys)
    assert make_key(FP, "passage", TEXTS[12]) in lost
    assert sorted(provider.sent) == sorted(keys[k] for k in lost)


def test_a_check_without_fix_changes_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    keys = fill(cache, 30)
    for key, corrupt in zip(keys, CORRUPTIONS.values()):
        corrupt(cache, key)
    files_before = sorted(p for p in cache.directory.rglob("*") if p.is_file() and "cache.db" not in p.name)

    report = router_on(cache).check_cache()

    assert not report.removed and not report.repaired
    assert len(cache) == 31
    assert sorted(p for p in cache.directory.rglob("*") if p.is_file() and "cache.db" not in p.name) == files_before
