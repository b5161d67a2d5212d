"""The remote kinds of source end to end through the engine's sync (a mirror import job into
the session's embedded Weaviate with the local embedder), each against a real server on
127.0.0.1 (tools/source_servers.py): the first sync imports every document; a sync with
nothing changed fetches nothing and starts no import (no embedding); a change at the
source (one document edited, one added, one removed) is exactly those documents written
and removed, nothing else re-embedded; a source unreachable part way through its listing
removes nothing. The sentinel password is then searched in every file of the data
directory but the secrets file (job database and audit trail, logs, spool) and in every
log record.

Each test prints one `figures:` line (seconds and fetches of the first sync, the unchanged
re-sync and the one-document change) for the closing note; nothing asserts a time.
"""
from __future__ import annotations

import imaplib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import REPO
from dashboard_support import memsys_env
from memsys import MemorySystem
from memsys.engine import Engine
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.sources.kinds import CONNECTORS
from memsys.logs import log_path
from memsys.store import MemoryFilter
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.source_servers import (  # noqa: E402
    S3_ACCESS_KEY, SENTINEL, Dovecot, Page, VersityGW, WebDAV, Website, html, mail,
)


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    yield engine
    engine.job_store.close()


@dataclass
class Probe:
    """Counts what the engine's connectors are asked to fetch (the real connectors, wrapped);
    `on_made` sees each connector the engine opens (to inject a fault into it)."""

    fetched: list[str] = field(default_factory=list)
    on_made: Callable[[Any], None] | None = None


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    probe = Probe()
    for kind in ("s3", "website", "imap", "webdav"):
        factory = CONNECTORS[kind]

        def made(spec: Any, secret: Any, factory: Any = factory) -> Any:
            connector = factory(spec, secret)
            real = connector.fetch

            def fetch(entry: Any, folder: Path) -> Path:
                probe.fetched.append(entry.key)
                return real(entry, folder)

            connector.fetch = fetch
            if probe.on_made is not None:
                probe.on_made(connector)
            return connector

        monkeypatch.setitem(CONNECTORS, kind, made)
    return probe


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert SENTINEL not in caplog.text


def documents(engine: Engine, project: str) -> set[str]:
    return {d.source_file for d in engine.memories.documents(MemoryFilter(project=project))}


def no_secret_in_data_dir(engine: Engine) -> None:
    secrets = (engine.settings.data_dir / "secrets").resolve()
    searched = 0
    for path in engine.settings.data_dir.rglob("*"):
        if path.is_file() and not path.resolve().is_relative_to(secrets):
            assert SENTINEL.encode() not in path.read_bytes(), f"the password is in {path}"
            searched += 1
    assert searched and engine.settings.jobs_db.is_file()
    assert "source.synced" in log_path(engine.settings).read_text()  # the log file was written, and searched


def page_shows_the_failure_and_no_secret(engine: Engine, tmp_path: Path, name: str, reason: str) -> None:
    """The Sources page of this data directory: the source, its failing sync's reason, its
    credential as 'stored', and the password nowhere in what the page rendered."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in memsys_env(engine.settings.data_dir).items():
            mp.setenv(key, value)
        mp.chdir(tmp_path)
        try:
            at = AppTest.from_file(str(REPO / "pages" / "sources.py"), default_timeout=120)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert list(at.dataframe[0].value["Source"]) == [name]
            assert reason in " ".join(str(w.value) for w in at.warning)
            assert "credential: stored" in " ".join(str(c.value) for c in at.caption)
            assert SENTINEL not in repr(at._tree)
        finally:
            st.cache_resource.clear()


class Syncs:
    """One source's syncs, timed and counted for the figures line."""

    def __init__(self, engine: Engine, probe: Probe, name: str, kind: str) -> None:
        self.engine, self.probe, self.name, self.kind = engine, probe, name, kind
        self.figures: list[str] = []

    def run(self, label: str) -> Any:
        self.probe.fetched.clear()
        started = time.monotonic()
        record = self.engine.sources.sync(self.name)
        seconds = time.monotonic() - started
        job = self.engine.job_store.get(record.job_id) if record.job_id else None
        touched = len(self.engine.job_store.documents(record.job_id)) + record.removed if record.job_id else record.removed
        misses = job.cache_misses if job else 0
        self.figures.append(f"{label}={seconds:.2f}s fetched={len(self.probe.fetched)} documents_touched={touched} "
                            f"texts_embedded={misses}")
        return record

    def job_documents(self, record: Any) -> set[str]:
        return {d.source_file for d in self.engine.job_store.documents(record.job_id)} if record.job_id else set()

    def report(self) -> None:
        print(f"\nfigures: {self.kind}: " + "; ".join(self.figures))


def check_unchanged(syncs: Syncs, total: int) -> None:
    again = syncs.run("unchanged_resync")
    assert again.state == "done", again.error
    assert (again.new, again.changed, again.unchanged, again.removed) == (0, 0, total, 0)
    assert again.job_id == "" and syncs.probe.fetched == []  # nothing fetched, no import, no embedding


# -- S3 -------------------------------------------------------------------------------------
def test_s3_source_syncs_only_what_changed(engine: Engine, probe: Probe, tmp_path: Path) -> None:
    server = VersityGW(tmp_path / "s3root")
    try:
        client = server.client()
        client.create_bucket(Bucket="memsys-sync")
        for name, text in (("a.md", "Alpha notes on the release."), ("b.md", "Beta notes on the budget."),
                           ("sub/c.md", "Gamma notes on the hiring plan.")):
            client.put_object(Bucket="memsys-sync", Key=f"kb/{name}", Body=text.encode())
        engine.sources.add("bucket", "s3", f"{server.endpoint}/memsys-sync/kb",
                           defaults=MemoryDefaults("s3sync", "r", "a"),
                           options={"access_key_id": S3_ACCESS_KEY, "page_size": "2"}, credential=SENTINEL)
        syncs = Syncs(engine, probe, "bucket", "s3")
        first = syncs.run("first_sync")
        assert first.state == "done", first.error
        assert first.new == 3 and documents(engine, "s3sync") == {"bucket/a.md", "bucket/b.md", "bucket/sub/c.md"}
        check_unchanged(syncs, 3)

        client.put_object(Bucket="memsys-sync", Key="kb/a.md", Body=b"Alpha notes, rewritten after the review.")
        change = syncs.run("one_document_change")
        assert (change.new, change.changed, change.removed) == (0, 1, 0)
        assert syncs.job_documents(change) == {"bucket/a.md"} and probe.fetched == ["a.md"]

        client.put_object(Bucket="memsys-sync", Key="kb/d.md", Body=b"Delta notes on the office move.")
        client.delete_object(Bucket="memsys-sync", Key="kb/b.md")
        change = syncs.run("one_added_one_deleted")
        assert (change.new, change.changed, change.removed) == (1, 0, 1)
        assert syncs.job_documents(change) == {"bucket/d.md"}
        assert documents(engine, "s3sync") == {"bucket/a.md", "bucket/sub/c.md", "bucket/d.md"}

        client.delete_object(Bucket="memsys-sync", Key="kb/d.md")  # would be removed, if the listing ended
        client.put_object(Bucket="memsys-sync", Key="kb/e.md", Body=b"Epsilon.")  # three objects: two pages
        probe.on_made = lambda c: c.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **_: server.stop())
        failed = syncs.run("server_stopped_mid_listing")
        assert failed.state == "failed" and "nothing was removed" in failed.error and SENTINEL not in failed.error
        assert documents(engine, "s3sync") == {"bucket/a.md", "bucket/sub/c.md", "bucket/d.md"}
        page_shows_the_failure_and_no_secret(engine, tmp_path, "bucket", "the server could not be reached")
        syncs.report()
    finally:
        server.stop()
    no_secret_in_data_dir(engine)


# -- website --------------------------------------------------------------------------------
def test_website_source_syncs_only_what_changed(engine: Engine, probe: Probe) -> None:
    site = Website()
    try:
        site.pages["/"] = Page(html("Handbook", "Welcome to the team handbook.", ("/leave", "/travel")))
        site.pages["/leave"] = Page(html("Leave", "Annual leave is twenty five days."))
        site.pages["/travel"] = Page(html("Travel", "Book travel through the portal."), etag=False)
        engine.sources.add("handbook", "website", site.url("/"), defaults=MemoryDefaults("websync", "r", "a"))
        syncs = Syncs(engine, probe, "handbook", "website")
        first = syncs.run("first_sync")
        assert first.state == "done", first.error
        assert documents(engine, "websync") == {"handbook/index.html", "handbook/leave.html", "handbook/travel.html"}
        assert site.page_hits("/leave") == 1  # the fetch used what the listing read
        site.not_modified = 0
        check_unchanged(syncs, 3)
        assert site.not_modified == 3  # every page asked for conditionally, none sent again

        site.pages["/leave"] = Page(html("Leave", "Annual leave is twenty seven days from January."))
        change = syncs.run("one_document_change")
        assert (change.new, change.changed, change.removed) == (0, 1, 0)
        assert syncs.job_documents(change) == {"handbook/leave.html"}

        site.pages["/"] = Page(html("Handbook", "Welcome to the team handbook.", ("/leave", "/expenses")))
        site.pages["/expenses"] = Page(html("Expenses", "Claim expenses within a month."))
        del site.pages["/travel"]
        change = syncs.run("one_added_one_deleted")
        assert (change.new, change.changed, change.removed) == (1, 1, 1)  # the home page changed its links
        assert syncs.job_documents(change) == {"handbook/index.html", "handbook/expenses.html"}

        site.fail.add("/expenses")  # the second page fails: a partial listing removes nothing
        del site.pages["/leave"]
        failed = syncs.run("page_fails_mid_listing")
        assert failed.state == "failed" and "answered 500" in failed.error
        assert documents(engine, "websync") == {"handbook/index.html", "handbook/leave.html", "handbook/expenses.html"}
        syncs.report()
    finally:
        site.stop()
    no_secret_in_data_dir(engine)


# -- IMAP -----------------------------------------------------------------------------------
def test_imap_source_syncs_new_and_deleted_mail(engine: Engine, probe: Probe, tmp_path: Path) -> None:
    server = Dovecot()
    try:
        uids = [server.append(mail("Outage report", "The database was down for ten minutes.")),
                server.append(mail("Invoice", "The invoice is attached.", ("invoice.txt", b"Invoice 42 covers two licences.")))]
        engine.sources.add("support", "imap", server.location(), defaults=MemoryDefaults("mailsync", "r", "a"),
                           options={"username": server.user}, credential=SENTINEL)
        syncs = Syncs(engine, probe, "support", "imap")
        first = syncs.run("first_sync")
        assert first.state == "done", first.error
        assert documents(engine, "mailsync") == {f"support/INBOX/{uids[0]}.eml", f"support/INBOX/{uids[1]}.eml",
                                                 f"support/INBOX/{uids[1]}.eml/invoice.txt"}
        check_unchanged(syncs, 2)

        new = server.append(mail("Follow-up", "The outage was caused by a full disk."))
        change = syncs.run("one_document_change")
        assert (change.new, change.changed, change.removed) == (1, 0, 0)
        assert syncs.job_documents(change) == {f"support/INBOX/{new}.eml"}

        imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
        imap.login(server.user, SENTINEL)
        imap.select("INBOX")
        imap.uid("STORE", str(uids[0]), "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.logout()
        change = syncs.run("one_deleted")
        assert (change.new, change.changed, change.removed) == (0, 0, 1)
        assert f"support/INBOX/{uids[0]}.eml" not in documents(engine, "mailsync")

        assert SENTINEL not in server.log_text()
        server.stop()  # the server goes away: the sync fails and removes nothing
        failed = syncs.run("server_unreachable")
        assert failed.state == "failed" and "could not be reached" in failed.error
        assert len(documents(engine, "mailsync")) == 3
        page_shows_the_failure_and_no_secret(engine, tmp_path, "support", "the server could not be reached")
        syncs.report()
    finally:
        server.stop()
    no_secret_in_data_dir(engine)


# -- WebDAV ---------------------------------------------------------------------------------
def test_webdav_source_syncs_only_what_changed(engine: Engine, probe: Probe, tmp_path: Path) -> None:
    server = WebDAV(tmp_path / "share")
    try:
        root = server.folder / "team"
        (root / "specs").mkdir(parents=True)
        (root / "roadmap.md").write_text("The roadmap has three milestones.")
        (root / "specs" / "api.md").write_text("The API returns JSON.")
        (root / "specs" / "old.md").write_text("An old specification.")
        engine.sources.add("share", "webdav", server.location + "team/", defaults=MemoryDefaults("davsync", "r", "a"),
                           options={"username": server.user}, credential=SENTINEL)
        syncs = Syncs(engine, probe, "share", "webdav")
        first = syncs.run("first_sync")
        assert first.state == "done", first.error
        assert documents(engine, "davsync") == {"share/roadmap.md", "share/specs/api.md", "share/specs/old.md"}
        check_unchanged(syncs, 3)

        (root / "specs" / "api.md").write_text("The API returns JSON and CSV.")
        change = syncs.run("one_document_change")
        assert (change.new, change.changed, change.removed) == (0, 1, 0)
        assert syncs.job_documents(change) == {"share/specs/api.md"} and probe.fetched == ["specs/api.md"]

        (root / "specs" / "old.md").unlink()
        (root / "notes.md").write_text("Meeting notes from Monday.")
        change = syncs.run("one_added_one_deleted")
        assert (change.new, change.changed, change.removed) == (1, 0, 1)
        assert syncs.job_documents(change) == {"share/notes.md"}

        (root / "notes.md").unlink()
        server.fail_paths.add("/dav/team/specs")  # the subfolder fails part way through the listing
        failed = syncs.run("subfolder_fails_mid_listing")
        assert failed.state == "failed" and "answered 500" in failed.error
        assert documents(engine, "davsync") == {"share/roadmap.md", "share/specs/api.md", "share/notes.md"}
        page_shows_the_failure_and_no_secret(engine, tmp_path, "share", "answered 500")
        syncs.report()
    finally:
        server.stop()
    no_secret_in_data_dir(engine)
