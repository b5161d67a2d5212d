"""Saved sources (issue 22): a folder and a git repository (file:// and a `git daemon` on
loopback) kept in sync by mirror import jobs that fetch only what changed; a listing that is
not complete removes nothing; credentials stay in the secrets file; the memsys server alone
runs the schedule and the folder watch."""
from __future__ import annotations

import base64
import http.server
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import REPO, free_port, run_memsys, settings_for
from dashboard_support import memsys_env, wait_until
from helpers import CountingLocalProvider
from memsys import MemorySystem
from memsys.access import Role, User, AccessDenied, AuthorizedEngine
from memsys.embeddings.cache import EmbeddingCache
from memsys.embeddings.router import EmbeddingRouter
from memsys.engine import Engine, MemoryDefaults, MemoryFilter
from memsys.ingest.sources.base import Listing
from memsys.ingest.sources.folder import FolderConnector
from memsys.store import server as memsys_server

DEFAULTS = MemoryDefaults(project="kb", repo="synced", agent="tests")
SENTINEL = "sEcReT-sentinel-7f3a9c"
GIT_ID = ["-c", "user.name=Ann Author", "-c", "user.email=ann@example.com"]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path, job_database: dict[str, str]) -> Iterator[Engine]:
    provider = CountingLocalProvider()
    # On SQLite and PostgreSQL (tests/postgres_support.py), with a data folder (and so an
    # embedding cache) of this test's own; the store is shared by the session, so what an
    # earlier test (or the other database's run) synced is removed first.
    settings = memsys_system.settings.replace(data_dir=tmp_path / "data", **job_database)
    router = EmbeddingRouter(settings, provider=provider, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(settings, router=router, store=memsys_system.store)
    memsys_system.store.delete_matching(MemoryFilter(project=DEFAULTS.project))
    engine = Engine(settings, system=system)
    yield engine
    engine.job_store.close()
    engine.audit_trail.close()
    engine.source_store.close()


def sent(engine: Engine) -> list[str]:
    provider = engine.system.router.provider
    assert isinstance(provider, CountingLocalProvider)
    return provider.sent


def documents(engine: Engine) -> dict[str, str]:
    """source_file -> the text of its memories, of the synced knowledge base."""
    out: dict[str, str] = {}
    for m in engine.memories.browse(MemoryFilter(project="kb", repo="synced"), limit=1000):
        out[m.source_file] = out.get(m.source_file, "") + m.content
    return out


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *GIT_ID, *args], check=True, capture_output=True, text=True).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    write(path, "guide.md", "The guide explains how to install the harvester on a farm tractor.")
    write(path, "docs/faq.md", "Frequently asked: the harvester runs on diesel and needs oil every week.")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "docs: the guide and the faq")
    return path


# --- a folder --------------------------------------------------------------------------------
def test_a_folder_source_syncs_only_what_changed_and_removes_what_is_gone(engine: Engine) -> None:
    folder = engine.settings.data_dir / "shared"
    write(folder, "apples.md", "Apples grow in orchards and ripen in autumn.")
    write(folder, "pears.md", "Pears are picked before they ripen and soften in storage.")
    write(folder, "plums/blue.md", "Blue plums make good jam in late summer.")
    write(folder, ".hidden.md", "Hidden files are not part of a source.")
    engine.sources.add("orchard", "folder", str(folder), defaults=DEFAULTS)

    first = engine.sources.sync("orchard")
    assert (first.state, first.new, first.changed, first.unchanged, first.removed) == ("done", 3, 0, 0, 0), first
    assert set(documents(engine)) == {"orchard/apples.md", "orchard/pears.md", "orchard/plums/blue.md"}
    job = engine.job_store.require(first.job_id)
    assert job.request["mirror"] and job.request["label"] == "sync of source orchard"

    calls = len(sent(engine))
    again = engine.sources.sync("orchard")
    assert (again.state, again.new, again.changed, again.unchanged, again.job_id) == ("done", 0, 0, 3, ""), again
    assert len(sent(engine)) == calls  # an unchanged source costs no provider call

    before = {m.source_file: m.uuid for m in engine.memories.browse(MemoryFilter(project="kb", repo="synced"))}
    write(folder, "pears.md", "Pears keep for months in a cold store.")
    write(folder, "cherries.md", "Cherries are the first fruit of the summer.")
    (folder / "plums" / "blue.md").unlink()
    third = engine.sources.sync("orchard")
    assert (third.state, third.new, third.changed, third.unchanged, third.removed) == ("done", 1, 1, 1, 1), third
    texts = documents(engine)
    assert set(texts) == {"orchard/apples.md", "orchard/pears.md", "orchard/cherries.md"}
    assert "cold store" in texts["orchard/pears.md"]
    new_texts = sent(engine)[calls:]
    assert any("cold store" in t for t in new_texts) and any("Cherries" in t for t in new_texts)
    assert not any("Apples" in t for t in new_texts)  # nothing else embedded again
    after = {m.source_file: m.uuid for m in engine.memories.browse(MemoryFilter(project="kb", repo="synced"))}
    assert after["orchard/apples.md"] == before["orchard/apples.md"]  # the unchanged document was not touched
    history = engine.sources.history("orchard")
    assert [h.new for h in history] == [1, 0, 3] and all(h.state == "done" for h in history)


def test_a_listing_that_is_not_complete_fails_the_sync_and_removes_nothing(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = engine.settings.data_dir / "notes"
    write(folder, "a.md", "Alpha notes about the first project milestone.")
    write(folder, "b.md", "Beta notes about the second project milestone.")
    engine.sources.add("notes", "folder", str(folder), defaults=DEFAULTS, schedule="every 30m")
    assert engine.sources.sync("notes").state == "done"

    real_list = FolderConnector.list

    def partial(self: FolderConnector) -> Listing:  # the fault: the listing breaks off after one document
        listing = real_list(self)
        return Listing(listing.entries[:1], False, "the folder could not be listed completely: b.md could not be read")

    monkeypatch.setattr(FolderConnector, "list", partial)
    failed = engine.sources.sync("notes")
    assert failed.state == "failed" and "nothing was removed" in failed.error and "b.md" in failed.error
    assert set(documents(engine)) == {"notes/a.md", "notes/b.md"}
    monkeypatch.undo()

    (folder / "b.md").unlink()
    folder.rename(folder.with_name("moved"))  # the folder itself is gone: unreachable
    gone = engine.sources.sync("notes")
    assert gone.state == "failed" and "cannot be found" in gone.error
    assert set(documents(engine)) == {"notes/a.md", "notes/b.md"}
    source = engine.sources.get("notes")
    assert source.failures == 2 and source.next_due_at is not None and source.next_due_at > time.time() + 100  # backing off
    assert [s.name for s in engine.sources.failing()] == ["notes"]


def test_sources_read_only_inside_the_allowed_folders(engine: Engine, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ValueError, match="outside the folders sources may read"):
        engine.sources.add("out", "folder", str(outside), defaults=DEFAULTS)
    with pytest.raises(ValueError, match="outside the folders sources may read"):
        engine.sources.add("etc", "git", "file:///etc", defaults=DEFAULTS)
    with pytest.raises(ValueError, match="outside the folders sources may read"):
        engine.sources.add("up", "folder", str(engine.settings.data_dir / ".." / "elsewhere"), defaults=DEFAULTS)
    with pytest.raises(ValueError, match="schedule"):
        engine.sources.add("bad", "folder", str(engine.settings.data_dir), defaults=DEFAULTS, schedule="sometimes")
    allowed = Engine(engine.settings.replace(source_roots=(str(outside),)), system=engine.system)
    try:
        assert allowed.sources.add("out", "folder", str(outside), defaults=DEFAULTS).location == str(outside)
    finally:
        allowed.job_store.close()
        allowed.audit_trail.close()
        allowed.source_store.close()


# --- git -----------------------------------------------------------------------------------
def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """A `git daemon` on a loopback port serving tmp_path/served; yields its URL base."""
    served = tmp_path / "served"
    served.mkdir()
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", "--reuseaddr", f"--base-path={served}",
                               "--listen=127.0.0.1", f"--port={port}", str(served)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 30, interval=0.1, what="git daemon listening")
        yield f"git://127.0.0.1:{port}", served, daemon
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_a_git_source_follows_commits_and_force_pushes_and_removes_nothing_when_unreachable(
        engine: Engine, git_daemon: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, served, daemon = git_daemon
    repo = make_repo(served / "tractor")
    wait_until(lambda: subprocess.run(["git", "ls-remote", f"{base}/tractor"], capture_output=True, timeout=10).returncode == 0,
               30, what="the daemon serving the repository")
    engine.sources.add("tractor", "git", f"{base}/tractor", defaults=DEFAULTS, options={"commits": "yes", "branch": "main"})
    first = engine.sources.sync("tractor")
    assert (first.state, first.new) == ("done", 3), first  # two files and one commit
    texts = documents(engine)
    commit_doc, = [name for name in texts if name.startswith("tractor/@commits/")]
    assert "docs: the guide and the faq" in texts[commit_doc] and "Ann Author" in texts[commit_doc]

    calls = len(sent(engine))
    write(repo, "guide.md", "The guide now explains how to service the harvester engine.")
    git(repo, "commit", "-q", "-am", "docs: servicing")
    second = engine.sources.sync("tractor")
    assert (second.state, second.new, second.changed, second.unchanged, second.removed) == ("done", 1, 1, 2, 0), second
    new_texts = sent(engine)[calls:]
    assert not any("diesel" in t for t in new_texts)  # the unchanged faq was not embedded again
    assert "service the harvester" in documents(engine)["tractor/guide.md"]
    assert engine.sources.get("tractor").cursor == git(repo, "rev-parse", "HEAD").strip()

    git(repo, "reset", "-q", "--hard", "HEAD~1")  # a force-push: the servicing commit is gone
    third = engine.sources.sync("tractor")
    assert (third.state, third.changed, third.removed) == ("done", 1, 1), third
    texts = documents(engine)
    assert "install the harvester" in texts["tractor/guide.md"]
    assert len([n for n in texts if n.startswith("tractor/@commits/")]) == 1

    daemon.terminate()
    daemon.wait(timeout=10)
    write(repo, "docs/faq.md", "Changed while the server is down.")
    down = engine.sources.sync("tractor")
    assert down.state == "failed" and "refused the connection" in down.error and "nothing was removed" in down.error
    assert set(documents(engine)) == set(texts)


def test_a_git_file_url_and_a_hanging_server_cost_only_their_source(engine: Engine) -> None:
    repo = make_repo(engine.settings.data_dir / "repos" / "local")
    engine.sources.add("local", "git", f"file://{repo}", defaults=DEFAULTS, include=["*.md"], exclude=["docs/*"])
    synced = engine.sources.sync("local")
    assert (synced.state, synced.new) == ("done", 1) and set(documents(engine)) == {"local/guide.md"}

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(1)  # accepts and never answers
    try:
        engine.sources.add("hangs", "git", f"git://127.0.0.1:{hanging.getsockname()[1]}/x.git", defaults=DEFAULTS,
                           options={"timeout": "5"})
        stuck = engine.sources.sync("hangs")
        assert stuck.state == "failed" and "did not answer within 5 s" in stuck.error
    finally:
        hanging.close()
    assert set(documents(engine)) == {"local/guide.md"}


# --- credentials ---------------------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Recorder.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401 if not self.headers.get("Authorization") else 404)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_credential_reaches_only_its_host_and_no_page_log_job_or_audit(engine: Engine, tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://ann:{SENTINEL}@127.0.0.1:{httpd.server_port}/team/docs.git"
        source = engine.sources.add("private", "git", url, defaults=DEFAULTS)
        assert SENTINEL not in source.location and source.spec.options["username"] == "ann"
        secrets_file = engine.settings.data_dir / "secrets" / "sources.json"
        assert secrets_file.stat().st_mode & 0o777 == 0o600 and SENTINEL in secrets_file.read_text()
        failed = engine.sources.sync("private")
        assert failed.state == "failed" and "no repository at that address" in failed.error
        expected = "Basic " + base64.b64encode(f"ann:{SENTINEL}".encode()).decode()
        assert expected in _Recorder.seen  # sent to the source's own host
    finally:
        httpd.shutdown()

    operator = AuthorizedEngine(engine, User("olga", "olga@example.com", Role.OPERATOR))
    with pytest.raises(AccessDenied):
        operator.sources.edit("private", location="http://elsewhere.example.com/docs.git")
    assert engine.sources.has_credential("private")
    engine.sources.edit("private", location=f"http://127.0.0.1:{free_port()}/docs.git")  # same host, other port
    assert not engine.sources.has_credential("private")  # another host (host:port): the credential is dropped

    found = []
    for path in engine.settings.data_dir.rglob("*"):
        if path.is_file() and path != secrets_file and SENTINEL.encode() in path.read_bytes():
            found.append(path)
    assert found == []  # not in the job database, the audit trail, the logs or the spool
    dump = job_database_text(engine)
    assert SENTINEL not in dump and "source.synced" in dump


def job_database_text(engine: Engine) -> str:
    """Everything the job database holds, as text: SQLite's dump, or every row of every
    table on PostgreSQL."""
    if engine.settings.database_url:
        with psycopg.connect(engine.settings.database_url) as conn:
            tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            return "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}".encode()))
    with sqlite3.connect(engine.settings.jobs_db) as db:
        return "\n".join(db.iterdump())


# --- the memsys server runs the schedule ----------------------------------------------------------
def test_the_memsys_server_alone_runs_the_schedule_and_the_folder_watch(tmp_path: Path) -> None:
    data = tmp_path / "server-data"
    env = {"MEMSYS_DATA_DIR": str(data), "MEMSYS_WEAVIATE_PORT": str(free_port()),
           "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_EMBEDDING_PROVIDER": "local",
           "MEMSYS_SERVER_IDLE_SECONDS": "60",
           "MEMSYS_SERVER_COMPANION": "memsys sources scheduler --tick 0.5 --debounce 0.5"}
    settings = settings_for(data, **env)
    folder = data / "watched"
    write(folder, "first.md", "The first note is about migrating birds in spring.")
    added = run_memsys(["sources", "add", "birds", "folder", str(folder), "--project", "kb", "--repo", "birds",
                        "--agent", "t", "--schedule", "every 1h"], env)
    assert added.returncode == 0, added.stderr
    watched = run_memsys(["sources", "add", "inbox", "folder", str(folder), "--project", "kb", "--repo", "inbox",
                          "--agent", "t", "--schedule", "on change"], env)
    assert watched.returncode == 0, watched.stderr
    # The server was down for ten hourly runs: they run once at start, not ten times.
    with sqlite3.connect(settings.jobs_db) as db:
        db.execute("UPDATE sources SET next_due_at = ? WHERE name = 'birds'", (time.time() - 36000,))
    started = run_memsys(["server", "start"], env)
    assert started.returncode == 0, started.stderr
    try:
        def syncs(name: str) -> list[tuple[str, str]]:
            with sqlite3.connect(settings.jobs_db) as db:
                return db.execute("SELECT y.trigger, y.state FROM source_syncs y JOIN sources s ON s.id = y.source_id"
                                  " WHERE s.name = ? ORDER BY y.started_at", (name,)).fetchall()

        wait_until(lambda: ("schedule", "done") in syncs("birds"), 240, what="the scheduled sync")
        with sqlite3.connect(settings.jobs_db) as db:
            due, = db.execute("SELECT next_due_at FROM sources WHERE name = 'birds'").fetchone()
        assert due > time.time() + 3000 and syncs("birds") == [("schedule", "done")]  # once, next in an hour

        engine = Engine(settings)
        try:
            wait_until(lambda: any(state == "done" for _, state in syncs("inbox")), 120, what="the first sync of inbox")
            saved = time.monotonic()
            write(folder, "second.md", "A second note: swallows return to the barn in April.")
            where = MemoryFilter(project="kb", repo="inbox", source_file="inbox/second.md")
            wait_until(lambda: engine.memories.count(where) > 0, 120, what="the watched file's memories")
            print(f"\nfigure: a file saved in a watched folder was searchable after {time.monotonic() - saved:.1f} s")
            assert ("change", "done") in syncs("inbox")
            hits = engine.memories.search("swallows barn", 3, MemoryFilter(project="kb", repo="inbox"))
            assert hits and hits[0].source_file == "inbox/second.md"
            # A credential given to a source the server syncs reaches no log, job or audit record.
            engine.sources.set_credential("birds", SENTINEL)
            assert engine.sources.sync("birds").state == "done"
        finally:
            engine.close()
    finally:
        memsys_server.stop_server(settings)
    log = (data / "server" / "weaviate.log").read_text()
    assert "started the companion" in log
    secrets_file = data / "secrets" / "sources.json"
    assert SENTINEL in secrets_file.read_text()
    leaked = [p for p in data.rglob("*") if p.is_file() and p != secrets_file and SENTINEL.encode() in p.read_bytes()]
    assert leaked == []


# --- the CLI and the page ---------------------------------------------------------------------------
def test_the_cli_lists_shows_and_asks_before_removing(tmp_path: Path) -> None:
    data = tmp_path / "cli-data"
    env = {"MEMSYS_DATA_DIR": str(data), "MEMSYS_SERVER_COMPANION": "off"}
    write(data / "docs", "a.md", "A document.")
    assert run_memsys(["sources", "add", "docs", "folder", str(data / "docs"), "--project", "kb", "--repo", "r",
                       "--agent", "a", "--schedule", "cron */15 * * * *"], env).returncode == 0
    shown = run_memsys(["sources", "show", "docs"], env)
    assert shown.returncode == 0 and "cron */15 * * * *" in shown.stdout and "syncs: none yet" in shown.stdout
    paused = run_memsys(["sources", "pause", "docs"], env)
    assert paused.returncode == 0 and "(paused)" in paused.stdout
    assert "(paused)" not in run_memsys(["sources", "resume", "docs"], env).stdout
    unknown = run_memsys(["sources", "sync", "doc"], env)
    assert unknown.returncode != 0 and "no source called 'doc'" in unknown.stdout + unknown.stderr
    assert "docs" in (unknown.stdout + unknown.stderr).split("no source called 'doc'")[1]  # the name it may have meant
    refused = run_memsys(["sources", "remove", "docs"], env)
    assert refused.returncode == 2 and "would remove source docs" in refused.stdout
    removed = run_memsys(["sources", "remove", "docs", "--yes"], env)
    assert removed.returncode == 0 and "source docs removed" in removed.stdout


def test_the_sources_page_shows_each_sync_and_never_the_credential(engine: Engine, tmp_path: Path) -> None:
    folder = engine.settings.data_dir / "page"
    write(folder, "x.md", "A page test document about lighthouses.")
    engine.sources.add("lights", "folder", str(folder), defaults=DEFAULTS, credential=SENTINEL)
    assert engine.sources.sync("lights").state == "done"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in memsys_env(engine.settings.data_dir).items():
            mp.setenv(name, value)
        if engine.settings.database_url:
            mp.setenv("MEMSYS_DATABASE_URL", engine.settings.database_url)
        mp.chdir(tmp_path)
        try:
            # The page alone: it reads the job database; it needs Weaviate for nothing here.
            at = AppTest.from_file(str(REPO / "pages" / "sources.py"), default_timeout=120)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert list(at.dataframe[0].value["Source"]) == ["lights"]
            history = at.dataframe[1].value
            assert list(history["State"]) == ["done"] and list(history["New"]) == [1]
            assert "credential: stored" in " ".join(str(c.value) for c in at.caption)
            assert [e.label for e in at.expander][-1] == "Remove this source (admins)"  # no sign-in: the local admin
            assert SENTINEL not in repr(at._tree)
            # "Add a source" picks the knowledge base from the list (or takes a new name), not a free-text Project.
            kb = next(s for s in at.selectbox if s.label == "Knowledge base")
            assert DEFAULTS.project in kb.options
            assert "Project" not in [t.label for t in at.text_input]
        finally:
            st.cache_resource.clear()
    # A name that differs from an existing knowledge base only by case or spaces is that one.
    typo = replace(DEFAULTS, project=f" {DEFAULTS.project.upper()}  ", repo=DEFAULTS.repo.upper())
    again = engine.sources.add("lights-too", "folder", str(folder), defaults=typo)
    assert (again.defaults.project, again.defaults.repo) == (DEFAULTS.project, DEFAULTS.repo)


def test_a_cancelled_sync_keeps_nothing_half_done_and_the_next_sync_fetches_again(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = engine.settings.data_dir / "drafts"
    write(folder, "one.md", "The first draft talks about sailing boats.")
    write(folder, "two.md", "The second draft talks about rowing boats.")
    engine.sources.add("drafts", "folder", str(folder), defaults=DEFAULTS)

    def cancelled_at_once(job_id: str) -> None:  # the fault: someone presses Cancel while the import waits its turn
        assert engine.jobs.cancel(job_id)

    monkeypatch.setattr(engine.runner, "submit", cancelled_at_once)
    stopped = engine.sources.sync("drafts")
    assert stopped.state == "cancelled" and engine.job_store.require(stopped.job_id).state == "cancelled"
    assert engine.sources.document_count("drafts") == 0  # no version remembered: nothing counts as synced
    monkeypatch.undo()
    again = engine.sources.sync("drafts")
    assert (again.state, again.new + again.changed) == ("done", 2), again
    assert set(documents(engine)) == {"drafts/one.md", "drafts/two.md"}


def test_a_sync_whose_process_stopped_is_settled_once_its_import_completes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = engine.settings.data_dir / "left"
    write(folder, "one.md", "A note about the lighthouse keeper's log.")
    write(folder, "two.md", "A note about the harbour master's tide tables.")
    engine.sources.add("left", "folder", str(folder), defaults=DEFAULTS)
    wait = engine.runner.wait

    def stopped(job_id: str, timeout: float | None = None) -> object:  # the fault: the process ends mid-import
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.runner, "wait", stopped)
    with pytest.raises(KeyboardInterrupt):
        engine.sources.sync("left")
    monkeypatch.undo()
    record, = engine.sources.history("left")
    assert record.state == "importing" and engine.sources.document_count("left") == 0
    assert wait(record.job_id, timeout=300).state == "completed"  # the import went on (as a resume would finish it)
    with engine.source_store._tx() as db:  # noqa: SLF001 - the process that ran the sync is gone
        db.execute("UPDATE source_syncs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:{2**22 + 7}", record.id))
    calls = len(sent(engine))
    after = engine.sources.sync("left")
    assert (after.state, after.new, after.unchanged) == ("done", 0, 2), after  # settled first: nothing fetched again
    assert len(sent(engine)) == calls
    assert engine.sources.history("left")[1].state == "done"  # the stopped sync, settled with its import's outcome
