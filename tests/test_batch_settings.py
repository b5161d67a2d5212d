"""Every batch setting does what its label says: changing it changes what an import (or
the guide's `write_memories_batch`) does. Real embedded Weaviate and the local embedder."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from memsys import MemorySystem
from memsys.config import BatchConfig, ConfigError
from memsys.embeddings.cache import EmbeddingCache
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobProgress

from helpers import short_texts, write_rows_csv

DEFAULTS = MemoryDefaults(project="proj", repo="main", agent="importer")
TENS = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10}, min_batch_size=10,
                   max_batch_size=10)


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    yield engine
    engine.job_store.close()


def run(engine: Engine, path: Path, config: BatchConfig) -> JobProgress:
    job_id = engine.imports.start(engine.imports.spool_paths([path]), DEFAULTS, config=config)
    return engine.jobs.wait(job_id, timeout=300)


def records(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"content": t, "project": "p", "repo": "r", "agent": "a", "tags": []} for t in short_texts(n, prefix)]


def spy_on_writes(system: MemorySystem, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = system.store.write

    def write(memories: Any, vectors: Any, **kwargs: Any) -> Any:
        sizes.append(len(memories))
        return real(memories, vectors, **kwargs)

    monkeypatch.setattr(system.store, "write", write)
    return sizes


@pytest.mark.parametrize(("size", "writes"), [(3, [3, 3, 1]), (50, [7])])
def test_default_batch_size_is_how_many_records_write_memories_batch_writes_at_once(
    memsys_system: MemorySystem, monkeypatch: pytest.MonkeyPatch, size: int, writes: list[int]
) -> None:
    memsys_system.batch_config = BatchConfig(default_batch_size=size)
    sizes = spy_on_writes(memsys_system, monkeypatch)
    uuids = memsys_system.write_memories_batch(records(7, f"size{size}"))
    assert sizes == writes
    assert len(set(uuids)) == 7 and memsys_system.count_memories() == 7


def test_enable_cache_off_sends_every_text_to_the_embedder_and_caches_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write_rows_csv(tmp_path / "rows.csv", short_texts(12, "uncached"))
    before = engine.cache.info()["num_entries"]
    job = run(engine, path, dataclasses.replace(TENS, enable_cache=False))
    assert (job.written, job.cache_hits, job.cache_misses) == (12, 0, 12)
    assert engine.cache.info()["num_entries"] == before
    engine.system.store.delete_all()
    again = run(engine, path, dataclasses.replace(TENS, enable_cache=False))
    assert (again.written, again.cache_hits) == (12, 0)  # nothing was cached for it to find


def test_enable_cache_on_fills_the_cache_and_the_next_import_finds_it(engine: Engine, tmp_path: Path) -> None:
    path = write_rows_csv(tmp_path / "rows.csv", short_texts(12, "cached"))
    run(engine, path, TENS)
    engine.system.store.delete_all()
    again = run(engine, path, TENS)
    assert (again.written, again.cache_hits, again.cache_misses) == (12, 12, 0)


def test_cache_dir_puts_a_jobs_vectors_in_its_own_cache_inside_the_data_folder(engine: Engine, tmp_path: Path) -> None:
    path = write_rows_csv(tmp_path / "rows.csv", short_texts(5, "own-cache"))
    job = run(engine, path, dataclasses.replace(TENS, cache_dir="project-cache"))
    assert job.written == 5
    folder = engine.system.settings.data_dir / "project-cache"
    cache = EmbeddingCache(folder)
    try:
        assert sum(cache.count_by_model().values()) == 5
    finally:
        cache.close()
    assert engine.cache.directory != folder


@pytest.mark.parametrize("outside", ["/tmp/elsewhere", "../elsewhere", "~/cache", "a/../../b"])
def test_cache_dir_outside_the_data_folder_is_refused(outside: str) -> None:
    with pytest.raises(ConfigError, match="cache_dir"):
        BatchConfig(cache_dir=outside)


@pytest.mark.parametrize(("every", "collections"), [(2, 3), (3, 2)])
def test_gc_frequency_collects_garbage_after_every_nth_batch(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, collections: int
) -> None:
    calls: list[int] = []
    monkeypatch.setattr("memsys.jobs.batches.gc.collect", lambda *a: calls.append(1) or 0)
    path = write_rows_csv(tmp_path / "rows.csv", short_texts(60, f"gc{every}"))
    job = run(engine, path, dataclasses.replace(TENS, gc_frequency=every))
    assert job.batches_done == 6
    assert len(calls) == collections


@pytest.mark.parametrize("log_errors", [True, False])
def test_log_errors_writes_each_failed_item_to_the_log(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture, log_errors: bool
) -> None:
    folder = tmp_path / f"docs-{log_errors}"
    folder.mkdir()
    (folder / "good.txt").write_text("A sentence worth keeping.", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="memsys.pipeline"):
        job = run(engine, folder, dataclasses.replace(TENS, log_errors=log_errors))
    assert (job.written, job.failed) == (1, 1)
    logged = [r.getMessage() for r in caplog.records if "empty.txt" in r.getMessage()]
    assert bool(logged) is log_errors


def test_enable_progress_bar_decides_whether_the_cli_draws_a_bar(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memsys.cli.follow import follow_job

    shown = {}
    for flag in (True, False):
        path = write_rows_csv(tmp_path / f"bar-{flag}.csv", short_texts(3, f"bar{flag}"))
        job_id = engine.imports.create(engine.imports.spool_paths([path]), DEFAULTS, config=dataclasses.replace(TENS, enable_progress_bar=flag))
        engine.jobs.run(job_id)
        assert follow_job(engine, job_id) == 0
        shown[flag] = "import:" in capsys.readouterr().err
    assert shown == {True: True, False: False}


def test_saved_batch_settings_are_what_new_imports_and_the_guides_writes_start_from(engine: Engine, tmp_path: Path) -> None:
    saved = BatchConfig(max_retries=7, default_batch_size=5)
    engine.batch.save(saved)
    assert engine.batch.saved() == saved
    assert engine.system.batch_config.default_batch_size == 5
    job_id = engine.imports.create(engine.imports.spool_paths([write_rows_csv(tmp_path / "r.csv", ["x"])]), DEFAULTS)
    assert engine.jobs.require(job_id).request["config"]["max_retries"] == 7
