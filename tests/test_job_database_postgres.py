"""The job database on PostgreSQL (MEMSYS_DATABASE_URL) beside the SQLite file: the same
calls give the same answers on both (jobs, items, batches, warnings, documents, knowledge
bases, sources, API tokens, the append-only audit trail, retention); `memsys db upgrade`
gives a fresh PostgreSQL database the whole schema and an old SQLite file its new columns,
and does nothing the second time; a PostgreSQL restart mid-use costs no restart of memsys;
its password shows nowhere. Against a real PostgreSQL 15 started by the tests
(tests/postgres_support.py)."""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import psycopg
import pytest

from components.session_settings import describe
from memsys import EmbeddingRouter, MemorySystem
from memsys.audit import AuditTrail
from memsys.config import BatchConfig
from memsys.embeddings.cache import EmbeddingCache
from memsys.embeddings.providers import Kind, LocalProvider
from memsys.engine import Engine
from memsys.cli.main import main as memsys_main
from memsys.config import Settings
from memsys.errors import JobStoreError
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.sources.base import SourceSpec
from memsys.jobs import JobDocument, JobStore, PlannedItem
from memsys.jobs.api_tokens import ApiTokenTables
from memsys.jobs.job_knowledge import DocumentRemoval
from memsys.jobs.metrics import BatchRecord
from memsys.jobs.postgres import WRITE_LOCK
from memsys.jobs.records import ItemOutcome
from memsys.jobs.retention import pruned_at, _mark
from memsys.jobs.schema import migrations
from memsys.jobs.sources import SourceTables
from memsys.models import document_id

from dashboard_support import wait_until
from helpers import short_texts, write_rows_csv
from postgres_support import PostgresServer

SMALL_BATCHES = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                            base_retry_delay=0.05, max_retry_delay=0.5, embed_workers=1)


def location(job_database: dict[str, str], tmp_path: Path) -> Path | str:
    return job_database.get("database_url") or tmp_path / "jobs.sqlite3"


def memory(content: str, source_file: str, tags: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"content": content, "project": "kb", "repo": "main", "source_file": source_file, "tags": tags or [], **fields}


def batch(job_id: str, batch_no: int, **figures: Any) -> BatchRecord:
    base = dict(job_id=job_id, batch_no=batch_no, size=2, embed_seconds=0.5, write_seconds=0.25, seconds=1.0,
                cache_hits=1, cache_misses=1, written=1, unchanged=0, failed=1, retries=0, started_at=100.0,
                finished_at=101.0)
    return BatchRecord(**{**base, **figures})


def test_a_job_from_plan_to_its_last_batch_reads_the_same_on_both(job_database: dict[str, str], tmp_path: Path) -> None:
    store = JobStore(location(job_database, tmp_path), timeout=5)
    try:
        job = store.create_job({"defaults": {"project": "kb", "repo": "main"}, "paths": ["a.md", "b.md"]})
        items = [PlannedItem(0, "u1", memory("alpha", "a.md", ["x"]), "a.md"),
                 PlannedItem(1, "u2", memory("beta 100%", "b.md", ["y"], record_id="r2"), "b.md"),
                 PlannedItem(2, "u1", memory("alpha", "a.md", ["x"]), "a.md copy"),  # same memory: unchanged at once
                 PlannedItem(3, None, None, "c.pdf page 2", state="failed", reason="cannot be read")]

        class Warning_:
            item, reason = "b.md", "odd encoding"

        store.add_items(job, items, [Warning_(), type("W", (), {"item": "a.md", "reason": "second"})()])
        store.finish_planning(job)
        store.claim(job)
        assert [p.uuid for p in store.pending_items(job)] == ["u1", "u2"]
        store.set_stage(job, [0], "embedded")
        assert store.embedded_in_flight(job) == 1
        store.record_batch(batch(job, 1), {0: ItemOutcome("written"), 1: ItemOutcome("failed", "timed out", "timeout")})
        store.record_batch(batch(job, 1, retries=2), {})  # a batch recorded again replaces its row
        store.clear_stages(job)
        store.add_documents(job, [JobDocument("d-a", "kb", "main", "a.md", "h1", 1),
                                  JobDocument("d-b", "kb", "main", "b.md", "h2", 1)])
        store.add_documents(job, [JobDocument("d-a", "kb", "main", "a.md", "h1b", 2)])  # replaced, not doubled
        store.set_state(job, "completed")

        progress = store.require(job)
        assert (progress.state, progress.total, progress.written, progress.unchanged, progress.failed) == ("completed", 4, 1, 1, 2)
        assert progress.request["paths"] == ["a.md", "b.md"]
        assert store.next_batch_no(job) == 2
        assert [b.retries for b in store.batches(job)] == [2]
        assert store.failed_counts(job) == (2, 1)
        assert [(f.item, f.reason) for f in store.failed_items(job)] == [("b.md", "timed out"), ("c.pdf page 2", "cannot be read")]
        assert store.errors_by_type(job) == {"timeout": 1, "input": 1}
        assert store.warnings(job) == (2, [("b.md", "odd encoding"), ("a.md", "second")])  # in the order given
        assert [(d.document_id, d.document_hash, d.chunks) for d in store.documents(job)] == [("d-a", "h1b", 2), ("d-b", "h2", 1)]
        assert store.stored_items(job) == [("u1", "a.md")]
        assert sorted(store.uuids_matching({"source_file": "b.md"})) == ["u2"]
        assert sorted(store.uuids_matching({"project": "kb"}, tags=["x"])) == ["u1"]
        assert store.sources_of(["u2"]) == {(job, "b.md")}
        assert store.keeps_content_of(job, "a.md")
        assert store.last_imports(["d-a"])["d-a"][0] == job
        files = {f.name: f for f in store.file_states(job)}
        assert set(files) == {"a.md", "b.md", "c.pdf page 2"}
        assert files["b.md"].failed == 1 and files["a.md"].written == 1
        assert [(p.project, p.imports, p.last_failed) for p in store.project_imports()] == [("kb", 1, 2)]
        activity = store.file_activity("kb")
        assert activity[("main", "b.md")].state == "failed" and activity[("main", "a.md")].state == "done"
        chunks = store.document_items(job, JobDocument(document_id("kb", "main", "b.md", "r2"), "kb", "main", "b.md", "h2", 1))
        assert chunks.uuids == {"u2"} and chunks.complete is False  # its one chunk failed
        timings = store.timings(job)
        assert timings is not None and timings.memories == 4

        assert store.reset_failed(job) == 1  # the unreadable page has nothing to try again
        assert store.require(job).failed == 1
        assert store.forget(["u2"]) == 1
        assert store.require(job).failed == 2 and store.failed_counts(job) == (2, 0)
        store.recount(job)
        assert store.require(job).failed == 2

        store.record_removal(DocumentRemoval("d-a", "kb", "main", "a.md", 5.0, "ann"))
        store.record_removal(DocumentRemoval("d-a", "kb", "main", "a.md", 6.0, "bob"))
        assert store.removals("kb")["d-a"].removed_by == "bob"
        store.remember("ann", "last import", {"project": "kb"})
        store.remember("ann", "last import", {"project": "kb2"})
        assert store.remembered("ann", "last import") == {"project": "kb2"}
        _mark(store, job, "texts_pruned_at", 7.0)
        _mark(store, job, "texts_pruned_at", 8.0)
        assert pruned_at(store, job) == 8.0

        store.request_cancel(job)  # a finished job stays as it ended
        assert store.require(job).state == "completed"
        assert [j.job_id for j in store.list_jobs()] == [job]
    finally:
        store.close()


def test_sources_tokens_and_the_audit_trail_behave_the_same_on_both(job_database: dict[str, str], tmp_path: Path) -> None:
    where = location(job_database, tmp_path)
    sources, tokens, trail = SourceTables(where, timeout=5), ApiTokenTables(where, timeout=5), AuditTrail(where, timeout=5)
    try:
        saved = sources.add("docs", SourceSpec(kind="folder", location=str(tmp_path)), MemoryDefaults(project="kb", repo="main", agent="test"),
                            schedule="every 15m")
        assert sources.due(saved.created_at - 1) == []
        assert [s.name for s in sources.due(saved.created_at + 1)] == ["docs"]  # a scheduled source is due at once
        sources.update(saved.id, paused=True, failures=2, last_error="offline")
        again = sources.require("docs")
        assert (again.paused, again.failures, again.last_error) == (True, 2, "offline")
        sources.apply_entries(saved.id, {"a.md": ("v1", 10, ["d-a"]), "b.md": ("v1", 5_000_000_000, [])}, [])
        sources.apply_entries(saved.id, {"a.md": ("v2", 11, ["d-a"])}, ["b.md"])
        assert {k: (e.version, e.documents) for k, e in sources.entries(saved.id).items()} == {"a.md": ("v2", ("d-a",))}
        sync = sources.claim_sync(saved.id, "manual")
        assert sync is not None and sources.claim_sync(saved.id, "manual") is None  # one at a time
        sources.update_sync(sync.id, state="done", new=1, finished_at=9.0)
        assert [(s.state, s.new) for s in sources.syncs(saved.id)] == [("done", 1)]
        with pytest.raises(ValueError, match="exists already"):
            sources.add("docs", SourceSpec(kind="folder", location=str(tmp_path)), MemoryDefaults(project="kb", repo="main", agent="test"))

        record, token = tokens.create("ci", "operator", ("kb",))
        assert tokens.find(token) == tokens.get(record.token_id)
        assert tokens.any_active()
        assert tokens.revoke(record.token_id) is True
        assert tokens.revoke(record.token_id) is False  # already revoked: nothing changed
        assert tokens.find(token) is None

        first = trail.record("import.started", "ann", target="job-1", details={"files": 2})
        trail.record_many([])
        from memsys.audit import AuditEntry
        trail.record_many([AuditEntry("memories.written", "api"), AuditEntry("memories.written", "api", target="t")])
        records = trail.records()
        assert [r.action for r in records] == ["memories.written", "memories.written", "import.started"]
        assert records[-1].id == first.id and records[-1].details == {"files": 2}
        assert [r.target for r in trail.records(action="import.started")] == ["job-1"]
        with pytest.raises(JobStoreError, match="append-only"):
            with trail._db.transaction() as db:  # noqa: SLF001 - what any writer of the table meets
                db.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(JobStoreError, match="append-only"):
            with trail._db.transaction() as db:  # noqa: SLF001
                db.execute("DELETE FROM audit")
        assert len(trail.records()) == 3
    finally:
        sources.close()
        tokens.close()
        trail.close()


def test_db_upgrade_gives_a_fresh_postgres_database_the_whole_schema_once(
        postgres_url: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_url()
    monkeypatch.setenv("MEMSYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMSYS_DATABASE_URL", url)
    assert memsys_main(["db", "upgrade"]) == 0
    first = capsys.readouterr().out
    assert "Upgraded the job database" in first and "1 job tables" in first and "3 audit trail" in first
    password = Settings.load(env={"MEMSYS_DATABASE_URL": url}, secrets_path=Path("/none")).secrets[-1]
    assert password and password not in first
    assert memsys_main(["db", "upgrade"]) == 0
    second = capsys.readouterr().out
    assert "is up to date; nothing was changed" in second and password not in second
    assert len([line for line in second.splitlines() if line.startswith("  ")]) == len(migrations())

    # The same tables and columns, in the same order, as a new SQLite file has.
    JobStore(tmp_path / "new.sqlite3").list_jobs()
    AuditTrail(tmp_path / "new.sqlite3").records()
    lite = sqlite3.connect(tmp_path / "new.sqlite3")
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    want = {t: [r[1] for r in lite.execute(f"PRAGMA table_info({t})")] for t in tables}
    with psycopg.connect(url) as conn:
        got = {t: [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                                              " ORDER BY ordinal_position", (t,))] for t in tables}
    got["warnings"].remove("rowid")  # SQLite's is implicit
    assert got == want
    assert not (tmp_path / "data" / "jobs.sqlite3").exists()  # the URL was used, not the data directory


def test_db_upgrade_gives_an_old_sqlite_file_its_new_columns_and_keeps_its_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "jobs.sqlite3")
    # A job database as the first release made it: no later columns, no migrations recorded.
    old.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
            state TEXT NOT NULL, request TEXT NOT NULL, planned INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
            written INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
            cache_hits INTEGER NOT NULL DEFAULT 0, cache_misses INTEGER NOT NULL DEFAULT 0,
            batches_done INTEGER NOT NULL DEFAULT 0, current_batch INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT '', heartbeat REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0, run_started_at REAL, run_processed_start INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE batches (job_id TEXT NOT NULL, batch_no INTEGER NOT NULL, size INTEGER NOT NULL,
            embed_seconds REAL NOT NULL, write_seconds REAL NOT NULL, seconds REAL NOT NULL, cache_hits INTEGER NOT NULL,
            cache_misses INTEGER NOT NULL, written INTEGER NOT NULL, unchanged INTEGER NOT NULL, failed INTEGER NOT NULL,
            retries INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL NOT NULL,
            error_type TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, batch_no));
        INSERT INTO jobs (id, created_at, state, request, total, written, finished_at, started_at)
            VALUES ('old-job', 1.0, 'completed', '{"paths": ["a.md"]}', 3, 3, 3.0, 2.0);
    """)
    old.close()
    monkeypatch.setenv("MEMSYS_DATA_DIR", str(data))
    monkeypatch.delenv("MEMSYS_DATABASE_URL", raising=False)
    assert memsys_main(["db", "upgrade"]) == 0
    assert "2 columns added since the first release" in capsys.readouterr().out
    lite = sqlite3.connect(data / "jobs.sqlite3")
    columns = [r[1] for r in lite.execute("PRAGMA table_info(jobs)")]
    assert {"ocr_pages", "updated", "removed", "read_seconds", "index_wait_seconds"} <= set(columns)
    assert {"tokens", "store_wait_seconds"} <= {r[1] for r in lite.execute("PRAGMA table_info(batches)")}
    assert [r[0] for r in lite.execute("SELECT version FROM schema_migrations ORDER BY version")] == \
        [m.version for m in migrations()]
    job = JobStore(data / "jobs.sqlite3").require("old-job")
    assert (job.state, job.written, job.request) == ("completed", 3, {"paths": ["a.md"]})
    assert memsys_main(["db", "upgrade"]) == 0
    assert "is up to date; nothing was changed" in capsys.readouterr().out


def test_a_postgres_restart_mid_use_costs_no_restart_of_memsys(postgres_server: PostgresServer,
                                                             postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    store, trail = JobStore(url, timeout=5), AuditTrail(url, timeout=5)
    try:
        job = store.create_job({"paths": ["a.md"]})
        store.add_items(job, [PlannedItem(0, "u1", memory("alpha", "a.md"), "a.md")])
        trail.record("import.started", "ann", target=job)
        postgres_server.restart()  # every connection memsys held is gone
        store.heartbeat(job, current_batch=1)  # the next write works, on a new connection
        assert store.require(job).current_batch == 1  # and the next read
        assert len(trail.records()) == 1
        trail.record("import.cancelled", "ann", target=job)
        assert [r.action for r in trail.records()] == ["import.cancelled", "import.started"]
    finally:
        store.close()
        trail.close()


def test_while_postgres_is_down_calls_fail_in_plain_words_without_the_password_then_carry_on(
        postgres_server: PostgresServer, postgres_url: Callable[[], str], caplog: pytest.LogCaptureFixture) -> None:
    url = postgres_url()
    store = JobStore(url, timeout=2)
    job = store.create_job({"paths": ["a.md"]})
    postgres_server.stop()
    try:
        with pytest.raises(JobStoreError) as failed_write:
            store.set_state(job, "running")
        with pytest.raises(JobStoreError) as failed_read:
            store.get(job)
    finally:
        postgres_server.start()
    for error in (failed_write.value, failed_read.value):
        assert error.kind == "cannot_open"
        assert f"127.0.0.1:{postgres_server.port}" in str(error) and "cannot be reached" in str(error)
        assert postgres_server.password not in str(error) and "memsys:" not in str(error)
    assert postgres_server.password not in caplog.text
    store.set_state(job, "running")  # the same store, once the server answers again
    assert store.require(job).state == "running"
    store.close()


def test_the_database_url_is_a_secret_of_the_settings(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    settings = Settings.load(env={"MEMSYS_DATABASE_URL": url}, secrets_path=Path("/none"))
    password = url.split(":")[2].split("@")[0]
    assert settings.job_database == url and password in settings.secrets
    assert password not in repr(settings)
    shown = [r.value for r in describe(settings) if r.name == "Job database"]
    assert shown == [f"PostgreSQL {url.replace(f'memsys:{password}@', '')}"]  # the Settings page: no user, no password
    with pytest.raises(Exception, match="MEMSYS_DATABASE_URL") as refused:
        Settings.load(env={"MEMSYS_DATABASE_URL": "mysql://u:hunter2@db/x"}, secrets_path=Path("/none"))
    assert "hunter2" not in str(refused.value)
    assert json.dumps(Settings.load(env={}, secrets_path=Path("/none")).job_database.__fspath__()).endswith('jobs.sqlite3"')


def test_another_writer_past_the_timeout_is_a_plain_lock_and_reads_go_on(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    store = JobStore(url, timeout=1)
    before = store.create_job({"label": "before"})
    with psycopg.connect(url, autocommit=True) as other:  # another process's write, as memsys takes it
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        with pytest.raises(JobStoreError) as caught:
            store.create_job({"label": "while locked"})
        assert caught.value.kind == "locked" and "locked by another process" in str(caught.value)
        assert [j.job_id for j in store.list_jobs()] == [before]  # reads never wait for writes
        other.execute("ROLLBACK")
    after = store.create_job({"label": "after"})  # the same store carries on
    assert {j.job_id for j in store.list_jobs()} == {before, after}
    store.close()


class HeldLocalProvider(LocalProvider):
    """The real local embedder; it embeds the `held` texts only once `go` is set, so
    "mid-import" is a moment the test chooses, not a timing guess."""

    def __init__(self, held: Sequence[str]) -> None:
        super().__init__()
        self.held = set(held)
        self.go = threading.Event()

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        if self.held.intersection(texts) and not self.go.wait(timeout=120):
            raise TimeoutError("the test never let this embedding call through")
        return super().embed(texts, kind)


def test_an_import_that_loses_postgres_stops_plainly_and_resumes_in_the_same_process(
        memsys_system: MemorySystem, postgres_server: PostgresServer, postgres_url: Callable[[], str], tmp_path: Path) -> None:
    texts = short_texts(20, "outage")
    provider = HeldLocalProvider(held=texts[10:])  # the first batch goes in, the rest waits
    router = EmbeddingRouter(memsys_system.settings, provider=provider, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(memsys_system.settings, router=router, store=memsys_system.store)
    settings = memsys_system.settings.replace(data_dir=tmp_path / "data", database_url=postgres_url(), jobs_db_timeout=2)
    engine = Engine(settings, system=system)
    paths = engine.imports.spool_paths([write_rows_csv(tmp_path / "rows.csv", texts)])
    job_id = engine.imports.start(paths, MemoryDefaults(project="kb", repo="main", agent="pg"), config=SMALL_BATCHES)
    wait_until(lambda: engine.job_store.require(job_id).processed >= 10, timeout=120, interval=0.05, what="first batch")
    assert engine.job_store.require(job_id).processed < 20  # the rest waits for the embedder
    postgres_server.stop()
    provider.go.set()  # the next batches are embedded while the database is gone
    try:
        wait_until(lambda: not engine.runner.is_busy(), timeout=120, what="the import to stop")  # the runner lives on
        with pytest.raises(JobStoreError, match="cannot be reached"):
            engine.job_store.get(job_id)
    finally:
        postgres_server.start()
    shown = engine.job_store.require(job_id)
    assert shown.state == "failed" and "cannot be reached" in shown.error and shown.is_resumable
    assert postgres_server.password not in shown.error
    wait_until(lambda: engine.job_store.flush_unrecorded() == 0, timeout=30, what="the stop written")
    engine.runner.resume(job_id)  # the same process, the same runner
    done = engine.runner.wait(job_id, timeout=300)
    assert (done.state, done.written, done.failed, done.total) == ("completed", 20, 0, 20)
    assert memsys_system.count_memories() == 20
    engine.job_store.close()
