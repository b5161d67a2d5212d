"""Cache operations around the health check: warm-up, clear, statistics, size limit and
eviction, the bulk lookup, and checks and repairs while imports write (a real second
thread and a real second process)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from test_cache_health import FILE_BACKED, FP, damage_page_holding, fill, open_cache, router_on, truncated
from helpers import CountingLocalProvider
from dashboard_support import wait_until

from memsys import Settings
from memsys.config import LOCAL_DIMENSIONS
from memsys.embeddings.cache import EmbeddingCache, make_key
from memsys.embeddings.router import EmbeddingRouter

REPO = Path(__file__).resolve().parent.parent


# --- warm-up, clear, statistics -------------------------------------------------------

def test_warmup_embeds_only_the_texts_not_yet_cached(tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    router = router_on(open_cache(tmp_path / "cache"), provider)
    router.warmup(["alpha note", "beta note"])
    provider.calls.clear()

    result = router.warmup(["alpha note", "beta note", "gamma note"])

    assert provider.sent == ["gamma note"]
    assert result.cache_hits == 2


def test_an_import_after_warmup_makes_no_provider_call(tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    router = router_on(open_cache(tmp_path / "cache"), provider)
    warmed = router.warmup(["alpha note", "beta note"])
    provider.calls.clear()

    result = router.embed(["beta note", "alpha note"])

    assert provider.calls == []
    np.testing.assert_array_equal(result.vectors, warmed.vectors[::-1])


def test_clear_removes_every_vector(tmp_path: Path) -> None:
    router = router_on(open_cache(tmp_path / "cache"))
    fill(router.cache, 100)

    removed = router.clear()

    assert removed == 101
    assert router.get_cache_info()["num_entries"] == 0


def test_lifetime_hits_and_misses_outlive_the_router(tmp_path: Path) -> None:
    router = router_on(open_cache(tmp_path / "cache"))
    router.cache.record_lookups(7, 3)
    router.cache.close()

    info = router_on(open_cache(tmp_path / "cache")).get_cache_info()

    assert (info["hits"], info["misses"], info["hit_rate"]) == (7, 3, 0.7)
    assert (info["session_hits"], info["session_misses"]) == (0, 0)


def test_cache_info_shows_the_configured_size_limit_and_eviction_policy(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cache_size_limit_bytes=5 * 2**20, cache_eviction_policy="least-recently-used")

    info = EmbeddingRouter(settings, provider=CountingLocalProvider()).get_cache_info()

    assert (info["size_limit_bytes"], info["eviction_policy"], info["evicts"]) == (5 * 2**20, "least-recently-used", True)


def test_by_default_nothing_is_evicted_even_far_past_the_size_limit(tmp_path: Path) -> None:
    assert Settings.load(env={}, secrets_path=Path("/nonexistent")).cache_eviction_policy == "none"
    cache = EmbeddingCache(tmp_path / "cache", size_limit_bytes=100_000)

    keys = fill(cache, 3_000)

    assert cache.volume() > 40 * cache.size_limit_bytes
    assert len(cache.get_many(keys, FP, LOCAL_DIMENSIONS)) == 3_000


def test_an_eviction_policy_once_chosen_keeps_the_cache_near_its_limit(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache", size_limit_bytes=500_000, eviction_policy="least-recently-stored")

    for batch in range(30):
        fill(cache, 100, seed=batch)

    assert len(cache) < 3_000


# --- the bulk lookup --------------------------------------------------------------------

def test_the_bulk_lookup_returns_the_stored_vectors_in_key_order(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 2_000)
    expected = cache.get_many(keys, FP, LOCAL_DIMENSIONS)
    order = keys[::-1] + [make_key(FP, "passage", "never stored")]

    matrix, found = cache.get_matrix(order, FP, LOCAL_DIMENSIONS)

    assert found.tolist() == [True] * 2_000 + [False]
    np.testing.assert_array_equal(matrix[:-1], np.stack([expected[k] for k in keys[::-1]]))


@pytest.mark.parametrize("min_file_size", [2**15, FILE_BACKED], ids=["inline", "file-backed"])
def test_the_bulk_lookup_treats_a_corrupt_entry_as_a_miss(tmp_path: Path, min_file_size: int) -> None:
    cache = open_cache(tmp_path / "cache", min_file_size)
    keys = fill(cache, 20)
    truncated(cache, keys[5])

    _, found = cache.get_matrix(keys, FP, LOCAL_DIMENSIONS)

    assert np.flatnonzero(~found).tolist() == [5]


def test_lookups_work_under_an_eviction_policy_that_tracks_reads(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache", eviction_policy="least-recently-used")
    keys = fill(cache, 50)

    _, found = cache.get_matrix(keys, FP, LOCAL_DIMENSIONS)

    assert found.all()


def test_a_corrupt_entry_is_re_embedded_on_import_without_a_check(tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    router = router_on(open_cache(tmp_path / "cache"), provider)
    router.embed(["first note", "second note"])
    truncated(router.cache, make_key(FP, "passage", "second note"))
    provider.calls.clear()

    router.embed(["first note", "second note"])

    assert provider.sent == ["second note"]


# --- concurrency ---------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from memsys.embeddings.cache import EmbeddingCache, ModelInfo, make_key

    directory, fp, batches, min_file_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    cache = EmbeddingCache(directory, min_file_size=min_file_size)
    rng = np.random.default_rng(7)
    for b in range(batches):
        keys = [make_key(fp, "passage", f"written by the other process {b}-{i}") for i in range(20)]
        cache.set_many(zip(keys, rng.standard_normal((20, 384)).astype(np.float32)), fp)
        if b == 0:
            print("writing", flush=True)
    print("done", flush=True)
    """
)


def start_writer(directory: Path, batches: int, min_file_size: int, wait_for: str = "writing") -> subprocess.Popen[str]:
    """Another process writing 20 vectors per batch into the cache; returns once it has
    printed `wait_for`: "ready" (about to open the cache) or "writing" (first batch in)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), FP, str(batches), str(min_file_size)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert writer.stdout is not None
    for expected in ("ready", "writing")[: 1 + (wait_for == "writing")]:
        assert writer.stdout.readline().strip() == expected
    return writer


def waiting_for_a_lock(pid: int) -> bool:
    """The kernel lists a flock request of process `pid` as waiting ("->") for a lock
    someone else holds."""
    return any(line.split()[1:3] == ["->", "FLOCK"] and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines())


def written_by_writer(batches: int) -> list[str]:
    return [make_key(FP, "passage", f"written by the other process {b}-{i}") for b in range(batches) for i in range(20)]


def test_another_process_waits_to_write_while_a_repair_holds_the_cache(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    with cache.maintenance():
        writer = start_writer(cache.directory, batches=1, min_file_size=2**15, wait_for="ready")
        wait_until(lambda: waiting_for_a_lock(writer.pid) or writer.poll() is not None, 60, interval=0.05,
                   what="the writer to wait for the cache's lock")
        assert writer.poll() is None
    out, err = writer.communicate(timeout=60)

    assert writer.returncode == 0 and out.strip() == "writing\ndone", err
    assert cache.get_matrix(written_by_writer(1), FP, LOCAL_DIMENSIONS)[1].all()


def test_another_thread_waits_to_write_while_a_repair_holds_the_cache(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    key = make_key(FP, "passage", "written by another thread")
    thread = threading.Thread(target=lambda: cache.set_many([(key, np.ones(LOCAL_DIMENSIONS))], FP))
    with cache.maintenance():
        thread.start()
        wait_until(lambda: waiting_for_a_lock(os.getpid()) or not thread.is_alive(), 60, interval=0.05,
                   what="the thread to wait for the cache's lock")
        assert thread.is_alive()
    thread.join(10)

    assert not thread.is_alive()
    assert key in cache.get_many([key], FP, LOCAL_DIMENSIONS)


def test_checks_and_repairs_while_another_process_writes_break_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    fill(cache, 500)
    router = router_on(cache)
    writer = start_writer(cache.directory, batches=150, min_file_size=FILE_BACKED)
    reports = []
    while writer.poll() is None or not reports:
        reports.append(router.check_cache(fix=True))
    out, err = writer.communicate(timeout=120)

    assert writer.returncode == 0 and out.strip() == "done", err
    assert len(reports) >= 2
    assert [r.problem_counts() for r in reports if not r.ok] == []
    assert cache.get_matrix(written_by_writer(150), FP, LOCAL_DIMENSIONS)[1].all()
    assert router.check_cache().healthy == 500 + 3_000 + 1


def test_checks_and_repairs_while_an_import_thread_embeds_break_nothing(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", FILE_BACKED)
    fill(cache, 300)
    checker = router_on(cache)
    importer = router_on(cache, CountingLocalProvider())
    texts = [f"item {i}" for i in range(48)]
    errors: list[BaseException] = []

    def run_import() -> None:
        try:
            for start in range(0, len(texts), 4):
                importer.embed(texts[start:start + 4])
        except BaseException as e:  # the test reports it below
            errors.append(e)

    thread = threading.Thread(target=run_import)
    thread.start()
    reports = []
    while thread.is_alive() or not reports:
        reports.append(checker.check_cache(fix=True))
    thread.join()

    assert errors == []
    assert len(reports) >= 2
    assert [r.problem_counts() for r in reports if not r.ok] == []
    assert importer.embed(texts).embedded == 0


def test_a_rebuild_while_another_process_writes_loses_none_of_its_writes(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    keys = fill(cache, 5_000)
    damage_page_holding(cache, keys[2_500])
    cache = open_cache(tmp_path / "cache")
    writer = start_writer(cache.directory, batches=400, min_file_size=2**15)

    fixed = router_on(cache).check_cache(fix=True)
    out, err = writer.communicate(timeout=120)

    assert fixed.rebuilt
    assert writer.returncode == 0 and out.strip() == "done", err
    assert cache.get_matrix(written_by_writer(400), FP, LOCAL_DIMENSIONS)[1].all()
    assert router_on(cache).check_cache().ok
