"""The honest preview and "where did the time go", on real Weaviate and the real local
embedder: a preview compares the files with the store (new, changed, unchanged and
to-be-removed documents and memories; provider calls only for what must be embedded;
an estimate only from speed measured here), and a job records its time by stage."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterator

import pytest

from memsys import EmbeddingRouter, MemorySystem
from memsys.embeddings.cache import EmbeddingCache
from components import figures, preview_views, stage_views
from memsys.engine import Engine, FailureGroup, JobTimings
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobProgress, JobStore
from memsys.retry import RetryPolicy
from memsys.waits import waited

from helpers import CountingLocalProvider
from test_documents import CHUNKS, PARAGRAPHS
from test_pipeline import SMALL_BATCHES

DEFAULTS = MemoryDefaults(project="preview", repo="handbook", agent="importer")
EXTRA = [
    "The cafeteria opens at eight and serves breakfast until half past ten every weekday.",
    "Parking permits are renewed each January through the facilities portal on the intranet.",
]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    router = EmbeddingRouter(memsys_system.settings, provider=CountingLocalProvider(),
                             cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=system)
    yield engine
    engine.job_store.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "deploys.md").write_text("\n\n".join(PARAGRAPHS), encoding="utf-8")
    (folder / "office.md").write_text("\n\n".join(EXTRA), encoding="utf-8")
    return folder


def files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def run(engine: Engine, paths: list[Path], **kwargs: object) -> JobProgress:
    job_id = engine.imports.start(engine.imports.spool_paths(paths), DEFAULTS, chunking=CHUNKS, config=SMALL_BATCHES,
                                  **kwargs)  # type: ignore[arg-type]
    return engine.runner.wait(job_id, timeout=300)


def preview(engine: Engine, paths: list[Path], **kwargs: object):  # noqa: ANN201 - ImportPreview
    return engine.imports.preview(engine.imports.spool_paths(paths), DEFAULTS, chunking=CHUNKS, config=SMALL_BATCHES,
                                  **kwargs)  # type: ignore[arg-type]


def test_a_first_preview_finds_every_document_new_and_no_measured_speed(engine: Engine, folder: Path) -> None:
    first = preview(engine, files(folder))
    assert (first.documents, first.new_documents, first.changed_documents, first.unchanged_documents) == (2, 2, 0, 0)
    assert first.new_memories == first.memories == first.to_write >= 6
    assert first.provider_calls >= 1 and first.to_embed == first.memories
    assert sorted(first.new_names) == ["deploys.md", "office.md"]
    assert not first.nothing_to_do
    # Nothing has run on this machine yet: no estimate is made up.
    assert first.estimated_seconds is None and first.speed_jobs == 0


def test_a_preview_of_imported_files_says_nothing_to_do_and_no_provider_call(engine: Engine, folder: Path) -> None:
    job = run(engine, files(folder))
    assert job.state == "completed" and job.failed == 0
    again = preview(engine, files(folder))
    assert again.nothing_to_do
    assert (again.new_documents, again.changed_documents, again.unchanged_documents) == (0, 0, 2)
    assert again.unchanged_memories == again.memories == job.written
    assert (again.to_write, again.to_update, again.stale_memories) == (0, 0, 0)
    assert (again.provider_calls, again.tokens, again.estimated_cost_usd, again.batch_sizes) == (0, 0, 0.0, [])
    # The first import measured this machine's speed; checking what is stored is all that is left.
    assert again.speed_jobs == 1 and again.estimated_seconds is not None and again.estimated_seconds >= again.read_seconds


def test_an_edited_document_is_one_changed_document_with_its_memories(engine: Engine, folder: Path) -> None:
    run(engine, files(folder))
    edited = [*PARAGRAPHS[:2], "Deploys are frozen during the last week of December for the holidays.", *PARAGRAPHS[3:4]]
    (folder / "deploys.md").write_text("\n\n".join(edited), encoding="utf-8")
    (folder / "new.md").write_text("Visitors sign in at the front desk and wear a badge at all times.", encoding="utf-8")
    seen = preview(engine, files(folder))
    assert (seen.new_documents, seen.changed_documents, seen.unchanged_documents) == (1, 1, 1)
    assert seen.changed_names == ["deploys.md"] and seen.new_names == ["new.md"]
    # One paragraph rewritten, one dropped: one memory to write, two stored ones removed.
    assert seen.to_write == 2 and seen.new_memories == 1 and seen.changed_memories == 1
    assert seen.stale_memories == 2
    assert seen.provider_calls == 1 and seen.to_embed == 2
    assert not seen.nothing_to_do
    # And the import does what the preview said.
    job = run(engine, files(folder))
    assert (job.written, job.removed) == (2, 2)


def test_a_mirror_preview_counts_the_documents_it_would_remove(engine: Engine, folder: Path) -> None:
    run(engine, files(folder), origin=[folder], mirror=True)
    (folder / "office.md").unlink()
    seen = preview(engine, files(folder), origin=[folder])
    assert (seen.mirror_documents, seen.mirror_memories) == (1, len(EXTRA))
    assert seen.unchanged_documents == 1 and not seen.nothing_to_do


def test_a_job_records_its_time_by_stage(engine: Engine, folder: Path) -> None:
    job = run(engine, files(folder))
    timings = engine.timings.job(job.job_id)
    assert timings is not None and not timings.nothing_to_do
    assert timings.read_seconds > 0 and timings.lookup_seconds > 0
    assert timings.embedding_seconds > 0 and timings.writing_seconds > 0
    # (Texts other tests embedded come from the shared cache: embedded or not, each went through the embedder.)
    assert (timings.embedded + timings.from_cache, timings.written, timings.memories) == (job.written, job.written, job.total)
    assert timings.batches == job.batches_done >= 1
    assert timings.wall_seconds >= timings.batch_wall_seconds > 0
    assert timings.batch_seconds >= timings.embedding_seconds
    batches = engine.jobs.batches(job.job_id)
    assert all(b.embedder_seconds > 0 and b.lookup_seconds >= 0 for b in batches)
    # A re-import of the same files embeds and writes nothing, and says so.
    again = run(engine, files(folder))
    nothing = engine.timings.job(again.job_id)
    assert nothing is not None and nothing.nothing_to_do
    assert (nothing.embedded, nothing.from_cache, nothing.written, nothing.unchanged) == (0, 0, 0, job.total)
    assert nothing.embedding_seconds == 0
    speed = engine.timings.speed()
    assert speed.jobs == 2 and speed.writing is not None and speed.checking is not None


def test_waiting_before_a_retry_is_counted_as_waiting() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OSError("connection reset")
        return "ok"

    before = waited()
    assert RetryPolicy(3, 0.02, 0.05).run(flaky, is_retryable=lambda e: True) == "ok"
    assert len(attempts) == 3
    assert waited() - before >= 0.04  # the two backoffs, each at least the base delay


def test_failed_items_are_grouped_by_reason_naming_their_files(engine: Engine, folder: Path) -> None:
    (folder / "broken.pdf").write_bytes(b"this is not a pdf at all")
    job = run(engine, files(folder))
    assert job.state == "completed" and job.failed == 1
    groups = engine.timings.failures(job.job_id)
    assert len(groups) == 1 and groups[0].count == 1
    assert groups[0].items[0].endswith("broken.pdf") and "PDF" in groups[0].reason


# --- on screen: the words the pages use (no Streamlit needed) ----------------------------------

def _timings(**changes: object) -> JobTimings:
    base = dict(wall_seconds=231.0, read_seconds=4.0, lookup_seconds=2.0, embedding_seconds=380.0, writing_seconds=30.0,
                provider_wait_seconds=6.0, store_wait_seconds=1.0, batch_seconds=418.0, batch_wall_seconds=225.0,
                memories=161, embedded=150, from_cache=11, written=161, unchanged=0, batches=7, tokens=0)
    return JobTimings(**{**base, **changes})  # type: ignore[arg-type]


def test_overlapping_batches_are_said_to_overlap() -> None:
    sentence = stage_views.overlap_sentence(_timings())
    assert sentence.startswith("Stages overlap: 7 batches ran at the same time, so 6 min 58 s of batch time passed in 3 min 45 s")
    assert stage_views.overlap_sentence(_timings(batch_seconds=100.0, batch_wall_seconds=100.0)) == \
        "7 batches one after another: 1 min 40 s of batch time in 1 min 40 s."


def test_each_stage_says_how_many_memories_per_second() -> None:
    rows = {r["Stage"]: r for r in stage_views.stage_rows(_timings())}
    assert rows["Embedding"]["Memories per second"] == "0.4 memories/s"
    assert rows["Writing"]["Memories per second"] == "5.4 memories/s"
    assert rows["Waiting for the provider"]["Time"] == "6.0 s"


def test_an_import_that_did_nothing_says_so() -> None:
    nothing = _timings(embedded=0, from_cache=0, written=0, unchanged=161, lookup_seconds=0.4)
    assert nothing.nothing_to_do
    assert stage_views.nothing_happened(nothing) == ("Nothing to embed or write: all 161 memories were already stored and "
                                                     "unchanged. No provider calls, no cost. Checking them took 0.4 s.")
    assert preview_views.nothing_to_do_sentence(161) == \
        "Nothing to do: all 161 memories are already stored and unchanged. No provider calls, no cost."


def test_failures_by_reason_name_their_files() -> None:
    rows = stage_views.failure_rows([FailureGroup("is not a PDF", "bad_input", 7, ("a.pdf", "b.pdf"))])
    assert rows == [{"Reason": "is not a PDF", "Memories": 7, "Files": "a.pdf, b.pdf and 5 more"}]


def test_two_runs_are_compared_in_plain_words_and_the_pages_units() -> None:
    def job(job_id: str, written: int, unchanged: int, hits: int, misses: int) -> JobProgress:
        return JobProgress(job_id=job_id, state="completed", total=161, written=written, unchanged=unchanged, failed=0,
                           processed=161, items_per_second=0.0, eta_seconds=None, current_batch=0, batches_done=7,
                           cache_hits=hits, cache_misses=misses, cache_hit_rate=hits / (hits + misses) if hits + misses else 0.0,
                           created_at=100.0, started_at=100.0, finished_at=331.0, error="", planned=True,
                           request={"label": "notes"})
    table = figures.comparison_table(job("a", 161, 0, 0, 161), job("b", 0, 161, 0, 0), [_timings(), None])
    measures = dict(zip(table["Measure"], zip(table.iloc[:, 1], table.iloc[:, 2])))
    assert not [m for m in measures if "_" in m]  # no raw names such as items_per_second
    assert measures["Time"] == ("3 min 51 s", "3 min 51 s")
    assert measures["Memories per second"] == ("0.7 memories/s", "0.7 memories/s")
    assert measures["From the cache"] == ("0%", "— (nothing embedded)")
    assert measures["Embedding"] == ("6 min 20 s", "—")
    assert measures["State"] == ("Completed", "Completed")


def test_a_job_database_from_before_the_stage_times_gets_them_on_open(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = JobStore(path)
    old.create_job({"label": "made before"})  # (the file and its tables are made on first use)
    old.close()
    new_columns = {"jobs": ("read_seconds", "lookup_seconds", "index_wait_seconds"),
                   "batches": ("lookup_seconds", "embedder_seconds", "provider_wait_seconds", "store_wait_seconds", "tokens")}
    with sqlite3.connect(path) as db:  # as a database made before these columns existed
        for table, columns in new_columns.items():
            for column in columns:
                db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DROP TABLE schema_migrations")  # (which came after them: such a file has none)
    store = JobStore(path)
    try:
        job_id = store.create_job({"label": "old"})
        store.add_stage_seconds(job_id, read=1.5)
        timings = store.timings(job_id)
        assert timings is not None and timings.read_seconds == 1.5 and timings.nothing_to_do
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        for table, columns in new_columns.items():
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            assert set(columns) <= present
