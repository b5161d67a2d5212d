"""The remote kinds of source at connector level, each against a real server on 127.0.0.1
started here (tools/source_servers.py): S3 (versitygw), a website (http.server), IMAP
(Dovecot) and WebDAV (wsgidav). For each: a listing with versions and a fetch; a change
at the source changes exactly the right versions; a server that stops part way, fails a
page or hangs gives a listing that is not complete (the sync then removes nothing) with a
reason, within the timeout; a document past the size limit is refused; the password (a
sentinel) appears in no problem, exception or log line.
"""
from __future__ import annotations

import gzip
import logging
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO
from memsys.ingest.readers.reading import read_disk_file, read_paths
from memsys.ingest.sources.base import Listing, SourceProblem, SourceSpec, open_connector
from memsys.ingest.sources.kinds import CONNECTORS
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.source_servers import (  # noqa: E402
    S3_ACCESS_KEY, SENTINEL, Dovecot, HangingServer, Page, VersityGW, WebDAV, Website, html, mail, wait_until,
)

BUCKET = "memsys-docs"


@pytest.fixture(autouse=True)
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of every library at DEBUG: none may hold the sentinel password."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert SENTINEL not in caplog.text


def versions(listing: Listing) -> dict[str, str]:
    return {e.key: e.version for e in listing.entries}


def listed(spec: SourceSpec, secret: str | None = None) -> tuple[Listing, object]:
    connector = open_connector(spec, secret)
    try:
        return connector.list(), connector
    finally:
        connector.close()


def test_every_remote_kind_registers_itself() -> None:
    assert {"s3", "website", "imap", "webdav"} <= set(CONNECTORS)


@pytest.fixture(scope="module")
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.stop()


# -- S3 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VersityGW]:
    server = VersityGW(tmp_path_factory.mktemp("s3") / "root")
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def s3_spec(endpoint: str, prefix: str, **options: str) -> SourceSpec:
    return SourceSpec("s3", f"{endpoint}/{BUCKET}/{prefix}", options={"access_key_id": S3_ACCESS_KEY, **options})


def test_s3_lists_by_pages_and_a_change_changes_exactly_its_versions(s3: VersityGW, tmp_path: Path) -> None:
    client = s3.client()
    for i in range(5):
        client.put_object(Bucket=BUCKET, Key=f"team/notes/n{i}.md", Body=f"Note {i} about the plan.".encode())
    client.put_object(Bucket=BUCKET, Key="team/notes/", Body=b"")  # a folder marker
    client.put_object(Bucket=BUCKET, Key="elsewhere/x.md", Body=b"not under the prefix")
    connector = open_connector(s3_spec(s3.endpoint, "team", page_size="2"), SENTINEL)
    first = connector.list()
    assert first.complete and first.problem == ""
    assert sorted(versions(first)) == [f"notes/n{i}.md" for i in range(5)]
    assert connector.calls == 3  # five objects and a marker, two a page
    path = connector.fetch(next(e for e in first.entries if e.key == "notes/n3.md"), tmp_path)
    assert path == tmp_path / "notes" / "n3.md" and path.read_text() == "Note 3 about the plan."
    connector.close()

    client.put_object(Bucket=BUCKET, Key="team/notes/n1.md", Body=b"Note 1, rewritten.")
    client.delete_object(Bucket=BUCKET, Key="team/notes/n4.md")
    second, _ = listed(s3_spec(s3.endpoint, "team", page_size="2"), SENTINEL)
    before, after = versions(first), versions(second)
    assert second.complete
    assert set(after) == set(before) - {"notes/n4.md"}
    assert [k for k in after if after[k] != before[k]] == ["notes/n1.md"]


def test_s3_server_stopped_between_pages_gives_an_incomplete_listing(s3: VersityGW, tmp_path: Path) -> None:
    client = s3.client()
    for i in range(4):
        client.put_object(Bucket=BUCKET, Key=f"stop/d{i}.txt", Body=b"text")
    second = VersityGW(s3.folder, port=None)  # another server over the same folder, stopped mid-listing
    connector = open_connector(s3_spec(second.endpoint, "stop", page_size="2", timeout="2"), SENTINEL)
    connector.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **_: second.stop())
    try:
        listing = connector.list()
    finally:
        second.stop()
        connector.close()
    assert not listing.complete
    assert len(listing.entries) == 2
    assert "could not be reached" in listing.problem


def test_s3_refuses_a_wrong_key_and_an_object_past_the_size_limit_without_the_secret(s3: VersityGW, tmp_path: Path) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="big/huge.txt", Body=b"x" * 5000)
    as_user, _ = listed(SourceSpec("s3", f"{s3.endpoint}/{BUCKET}/big", options={"username": S3_ACCESS_KEY}), SENTINEL)
    assert as_user.complete and [e.key for e in as_user.entries] == ["huge.txt"]  # the key id as the URL's user name
    wrong, _ = listed(s3_spec(s3.endpoint, "big"), "not-" + SENTINEL)
    assert not wrong.complete and "secret key does not match" in wrong.problem
    assert SENTINEL not in wrong.problem
    connector = open_connector(SourceSpec("s3", f"{s3.endpoint}/{BUCKET}/big", max_bytes=1000,
                                          options={"access_key_id": S3_ACCESS_KEY}), SENTINEL)
    entry = connector.list().entries[0]
    with pytest.raises(SourceProblem, match="larger than the limit of 1000 bytes") as refused:
        connector.fetch(entry, tmp_path)
    assert SENTINEL not in str(refused.value) and not any(tmp_path.iterdir())
    connector.close()


def test_s3_server_that_hangs_times_out(hanging: HangingServer) -> None:
    started = time.monotonic()
    listing, _ = listed(s3_spec(f"http://127.0.0.1:{hanging.port}", "x", timeout="1"), SENTINEL)
    assert not listing.complete and "did not answer within 1 seconds" in listing.problem
    assert time.monotonic() - started < 15  # two attempts of 1 s each, far below the default 30 s


# -- website --------------------------------------------------------------------------------
@pytest.fixture
def site() -> Iterator[Website]:
    website = Website()
    yield website
    website.stop()


def website_spec(url: str, tmp_path: Path, **options: str) -> SourceSpec:
    return SourceSpec("website", url, options={"_work_dir": str(tmp_path / "state"), **options})


def test_website_by_sitemap_index_honours_robots_and_asks_conditionally(site: Website, tmp_path: Path) -> None:
    site.pages["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private/\n", "text/plain")
    site.pages["/sitemap.xml"] = Page(
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>/sitemap-a.xml</loc></sitemap><sitemap><loc>/sitemap-b.xml</loc></sitemap>"
        b"<sitemap><loc>/sitemap.xml</loc></sitemap></sitemapindex>", "application/xml")
    urls = lambda *paths: ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'  # noqa: E731
                           + "".join(f"<url><loc>{p}</loc></url>" for p in paths) + "</urlset>").encode()
    site.pages["/sitemap-a.xml"] = Page(urls("/", "/guide/setup", "/private/salaries"), "application/xml")
    site.pages["/sitemap-b.xml"] = Page(urls(f"http://localhost:{site.port}/elsewhere", "/faq.html"), "application/xml")
    site.pages["/"] = Page(html("Home", "Welcome to the handbook."))
    site.pages["/guide/setup"] = Page(html("Setup", "Install the agent first."), etag=False)
    site.pages["/faq.html"] = Page(html("FAQ", "Questions people ask."))
    site.pages["/private/salaries"] = Page(html("Salaries", "Not for robots."))

    spec = website_spec(site.url("/sitemap.xml"), tmp_path)
    connector = open_connector(spec, None)
    first = connector.list()
    assert first.complete, first.problem
    assert sorted(versions(first)) == ["faq.html", "guide/setup.html", "index.html"]
    assert site.page_hits("/private/salaries") == 0 and not any(host.startswith("localhost") for host, _ in site.hits)
    page = connector.fetch(next(e for e in first.entries if e.key == "guide/setup.html"), tmp_path / "out")
    assert b"Install the agent first." in page.read_bytes()
    connector.close()
    assert site.page_hits("/guide/setup") == 1  # the fetch used the body read while listing

    site.pages["/faq.html"] = Page(html("FAQ", "Questions people ask, and a new answer."))
    site.not_modified = 0
    second, _ = listed(spec)
    assert second.complete
    assert site.not_modified == 2  # home by ETag, setup by Last-Modified
    assert [k for k, v in versions(second).items() if versions(first)[k] != v] == ["faq.html"]


def test_website_sitemap_may_be_gzipped(site: Website, tmp_path: Path) -> None:
    xml = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>/only</loc></url></urlset>'
    site.pages["/sitemap.xml.gz"] = Page(gzip.compress(xml), "application/gzip")
    site.pages["/only"] = Page(html("Only", "The only page."))
    listing, _ = listed(website_spec(site.url("/sitemap.xml.gz"), tmp_path))
    assert listing.complete and sorted(versions(listing)) == ["only.html"]
    site.pages["/bomb.xml.gz"] = Page(gzip.compress(b" " * (11 * 2**20)), "application/gzip")
    bomb, _ = listed(website_spec(site.url("/bomb.xml.gz"), tmp_path))
    assert not bomb.complete and "unpacks to more than" in bomb.problem


def test_website_by_start_url_stays_on_its_host_and_within_the_page_limit(site: Website, tmp_path: Path) -> None:
    other = f"http://localhost:{site.port}"
    site.pages["/"] = Page(html("Home", "Start here.", ("/a", "/b", f"{other}/c", "mailto:x@example.com", "/moved#top",
                                                        "/report.pdf", "/data")))
    site.pages["/report.pdf"] = Page(b"%PDF-1.4 not a page", "application/pdf")
    site.pages["/data"] = Page(b'{"not": "a page"}', "application/json")
    site.pages["/a"] = Page(html("A", "Page a.", ("/", "/b")))
    site.pages["/b"] = Page(html("B", "Page b.", ("/d",)))
    site.pages["/d"] = Page(html("D", "Page d."))
    site.redirect["/moved"] = f"{other}/d"  # a redirect to another host is not followed
    listing, _ = listed(website_spec(site.url("/"), tmp_path))
    assert listing.complete, listing.problem
    assert sorted(versions(listing)) == ["a.html", "b.html", "d.html", "index.html"]
    assert [h for h in site.hits if h[0].startswith("localhost")] == []
    assert site.page_hits("/report.pdf") == 0  # plainly not a page: not asked for

    capped, _ = listed(website_spec(site.url("/"), tmp_path / "other", max_pages="2"))
    assert capped.complete and "more than 2 pages" in capped.problem  # the first two pages are the source
    assert sorted(versions(capped)) == ["a.html", "index.html"]


def test_website_whose_second_page_fails_or_whose_sitemaps_loop_is_incomplete(site: Website, tmp_path: Path) -> None:
    site.pages["/"] = Page(html("Home", "Start.", ("/a", "/b")))
    site.pages["/a"] = Page(html("A", "a"))
    site.pages["/b"] = Page(html("B", "b"))
    site.fail.add("/a")
    listing, _ = listed(website_spec(site.url("/"), tmp_path))
    assert not listing.complete and "/a answered 500" in listing.problem

    for n in range(200):  # each sitemap index points to the next one: it never ends
        site.pages[f"/map{n}.xml"] = Page(
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>/map{n + 1}.xml</loc></sitemap></sitemapindex>'.encode(),
            "application/xml")
    looping, _ = listed(website_spec(site.url("/map0.xml"), tmp_path, max_sitemaps="5"))
    assert not looping.complete and "past 5 files" in looping.problem
    assert site.page_hits("/map5.xml") == 0

    gone, _ = listed(website_spec(site.url("/moved-away"), tmp_path))  # not "a website without pages"
    assert not gone.complete and "start page /moved-away is not there" in gone.problem
    site.pages["/robots.txt"] = Page(b"User-agent: *\nDisallow: /\n", "text/plain")
    refused, _ = listed(website_spec(site.url("/"), tmp_path))
    assert not refused.complete and "robots.txt does not allow" in refused.problem


def test_website_that_hangs_times_out(hanging: HangingServer, tmp_path: Path) -> None:
    started = time.monotonic()
    listing, _ = listed(website_spec(f"http://127.0.0.1:{hanging.port}/", tmp_path, timeout="1"))
    assert not listing.complete and "did not answer within 1 seconds" in listing.problem
    assert time.monotonic() - started < 10


def test_website_page_past_the_size_limit_is_not_read(site: Website, tmp_path: Path) -> None:
    site.pages["/"] = Page(html("Home", "x" * 5000))
    connector = open_connector(SourceSpec("website", site.url("/"), max_bytes=1000, options={"_work_dir": str(tmp_path)}), None)
    listing = connector.list()
    connector.close()
    assert not listing.complete and "larger than the limit of 1000 bytes" in listing.problem


# -- IMAP -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    yield server
    assert SENTINEL not in server.log_text()
    server.stop()


def imap_spec(server: Dovecot, folder: str = "INBOX", **options: str) -> SourceSpec:
    return SourceSpec("imap", server.location(folder), options={"user": server.user, **options})


def test_imap_lists_messages_by_uid_and_a_new_mail_is_a_new_document(dovecot: Dovecot, tmp_path: Path) -> None:
    first_uid = dovecot.append(mail("Quarterly plan", "The plan is ready."))
    dovecot.append(mail("Invoice", "See the attachment.", ("invoice.txt", b"Invoice 42: two licences.")))
    connector = open_connector(imap_spec(dovecot), SENTINEL)
    first = connector.list()
    assert first.complete, first.problem
    keys = sorted(versions(first))
    assert keys == [f"INBOX/{first_uid}.eml", f"INBOX/{first_uid + 1}.eml"]
    validity = first.entries[0].version.split(":")[0]
    assert versions(first)[f"INBOX/{first_uid}.eml"] == f"{validity}:{first_uid}"
    fetched = connector.fetch(first.entries[1], tmp_path)
    assert fetched == tmp_path / "INBOX" / f"{first_uid + 1}.eml"
    pieces = {p.source_file: p.text for p in read_paths([fetched], read_disk_file)}  # the e-mail reader, attachment too
    assert "Subject: Invoice" in pieces[f"{first_uid + 1}.eml"]
    assert pieces[f"{first_uid + 1}.eml/invoice.txt"].strip() == "Invoice 42: two licences."
    connector.close()

    new_uid = dovecot.append(mail("Follow-up", "One more thing."))
    second, _ = listed(imap_spec(dovecot), SENTINEL)
    assert second.complete
    assert set(versions(second)) - set(versions(first)) == {f"INBOX/{new_uid}.eml"}
    assert all(versions(second)[k] == v for k, v in versions(first).items())


def test_imap_refuses_a_wrong_password_and_a_message_past_the_limit(dovecot: Dovecot, tmp_path: Path) -> None:
    wrong, _ = listed(imap_spec(dovecot), "not-" + SENTINEL)
    assert not wrong.complete and "refused the user and password" in wrong.problem
    dovecot.append(mail("Big", "y" * 3000), folder="INBOX")
    connector = open_connector(SourceSpec("imap", dovecot.location(), max_bytes=1000, options={"user": dovecot.user}), SENTINEL)
    big = max(connector.list().entries, key=lambda e: e.size or 0)
    with pytest.raises(SourceProblem, match="larger than the limit of 1000 bytes"):
        connector.fetch(big, tmp_path)
    connector.close()
    missing, _ = listed(imap_spec(dovecot, folder="NoSuchFolder"), SENTINEL)
    assert not missing.complete and "could not be opened" in missing.problem


def test_imap_server_that_hangs_times_out(hanging: HangingServer) -> None:
    started = time.monotonic()
    spec = SourceSpec("imap", f"imap://127.0.0.1:{hanging.port}/INBOX", options={"user": "x", "timeout": "1"})
    listing, _ = listed(spec, SENTINEL)
    assert not listing.complete and "did not answer within 1 seconds" in listing.problem
    assert time.monotonic() - started < 10


def test_imap_over_tls_and_starttls_verifies_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Dovecot(tls=True)
    try:
        uid = server.append(mail("Over TLS", "Read through an encrypted connection."))
        untrusted, _ = listed(imap_spec_at(server.location(scheme="imaps"), server.user), SENTINEL)
        assert not untrusted.complete and "TLS connection failed" in untrusted.problem
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # the test's CA, as an operator would install theirs
        for location in (server.location(scheme="imaps"), server.location()):  # TLS, then STARTTLS
            listing, _ = listed(imap_spec_at(location, server.user), SENTINEL)
            assert listing.complete, listing.problem
            assert sorted(versions(listing)) == [f"INBOX/{uid}.eml"]
        def tls_logins() -> list[str]:
            return [line for line in server.log_text().splitlines() if "Login: user=<tester>" in line and ", TLS" in line]

        # Dovecot writes a login's line on its own time: wait for both (CI read the log between them).
        wait_until(lambda: len(tls_logins()) >= 2, what="both logins in Dovecot's log")
        assert len(tls_logins()) == 2  # imaps and STARTTLS, both encrypted
        assert SENTINEL not in server.log_text()
    finally:
        server.stop()


def imap_spec_at(location: str, user: str) -> SourceSpec:
    return SourceSpec("imap", location, options={"username": user})


def test_imap_sends_no_password_in_plain_to_another_host() -> None:
    with pytest.raises(SourceProblem, match="location must not hold"):
        open_connector(SourceSpec("imap", f"imap://u:{SENTINEL}@127.0.0.1:1/INBOX", options={"user": "u"}), SENTINEL)


# -- WebDAV ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAV]:
    server = WebDAV(tmp_path_factory.mktemp("dav") / "share")
    yield server
    server.stop()


def dav_spec(server: WebDAV, folder: str, **options: str) -> SourceSpec:
    return SourceSpec("webdav", server.location + folder, options={"user": server.user, **options})


def test_webdav_lists_subfolders_and_a_change_changes_exactly_its_versions(dav: WebDAV, tmp_path: Path) -> None:
    root = dav.folder / "kb"
    (root / "guides" / "deep").mkdir(parents=True)
    (root / "readme.md").write_text("Read me first.")
    (root / "guides" / "setup.md").write_text("Set up the agent.")
    (root / "guides" / "deep" / "tuning notes.md").write_text("Tune the batch size.")
    (root / "old.md").write_text("Old page.")
    connector = open_connector(dav_spec(dav, "kb/"), SENTINEL)
    first = connector.list()
    assert first.complete, first.problem
    assert sorted(versions(first)) == ["guides/deep/tuning notes.md", "guides/setup.md", "old.md", "readme.md"]
    fetched = connector.fetch(next(e for e in first.entries if e.key == "guides/deep/tuning notes.md"), tmp_path)
    assert fetched.read_text() == "Tune the batch size."
    connector.close()

    (root / "guides" / "setup.md").write_text("Set up the agent, then the server.")
    (root / "old.md").unlink()
    second, _ = listed(dav_spec(dav, "kb/"), SENTINEL)
    assert second.complete
    assert set(versions(second)) == set(versions(first)) - {"old.md"}
    assert [k for k, v in versions(second).items() if versions(first)[k] != v] == ["guides/setup.md"]


def test_webdav_subfolder_failing_mid_listing_or_a_wrong_password_is_incomplete(dav: WebDAV, tmp_path: Path) -> None:
    root = dav.folder / "partial"
    (root / "a").mkdir(parents=True)
    (root / "top.md").write_text("top")
    (root / "a" / "inner.md").write_text("inner")
    dav.fail_paths.add("/dav/partial/a")
    try:
        listing, _ = listed(dav_spec(dav, "partial/"), SENTINEL)
    finally:
        dav.fail_paths.clear()
    assert not listing.complete and "answered 500" in listing.problem
    wrong, _ = listed(dav_spec(dav, "partial/"), "not-" + SENTINEL)
    assert not wrong.complete and "refused the user and password" in wrong.problem


def test_webdav_file_past_the_size_limit_and_a_hanging_server(dav: WebDAV, hanging: HangingServer, tmp_path: Path) -> None:
    (dav.folder / "big").mkdir()
    (dav.folder / "big" / "huge.txt").write_bytes(b"z" * 5000)
    connector = open_connector(SourceSpec("webdav", dav.location + "big/", max_bytes=1000, options={"user": dav.user}), SENTINEL)
    entry = connector.list().entries[0]
    with pytest.raises(SourceProblem, match="larger than the limit of 1000 bytes"):
        connector.fetch(entry, tmp_path)
    connector.close()
    started = time.monotonic()
    spec = SourceSpec("webdav", f"http://127.0.0.1:{hanging.port}/dav/", options={"user": "u", "timeout": "1"})
    listing, _ = listed(spec, SENTINEL)
    assert not listing.complete and "did not answer within 1 seconds" in listing.problem
    assert time.monotonic() - started < 10


def test_webdav_never_follows_a_redirect_to_another_host_with_the_password(dav: WebDAV, hanging: HangingServer) -> None:
    (dav.folder / "moved" / "inner").mkdir(parents=True)
    (dav.folder / "moved" / "a.md").write_text("a")
    dav.redirect_paths["/dav/moved/inner"] = f"http://localhost:{hanging.port}/dav/inner/"
    accepted = len(hanging.accepted)
    try:
        listing, _ = listed(dav_spec(dav, "moved/"), SENTINEL)
    finally:
        dav.redirect_paths.clear()
    assert not listing.complete and "another host" in listing.problem
    assert len(hanging.accepted) == accepted  # the other host was never even connected to
