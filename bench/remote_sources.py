"""Saved sources of the remote kinds (issue 22): an S3 bucket (versitygw), a website
(http.server), an IMAP folder (Dovecot) and a WebDAV folder (wsgidav), each a real server on
127.0.0.1 holding DOCUMENTS short documents (tools/source_servers.py). For each, as
bench.sources does for a folder and git: the first sync, an unchanged re-sync and a
one-document change: seconds, provider calls (requests that reached the embedder),
documents fetched and documents touched (new + changed + removed). Goals: 0 provider calls
and 0 documents fetched for the unchanged re-sync, 1 document touched by the one-document
change. Fresh data directory and embedding cache, the local embedder."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.common import Result
from bench.pipeline import free_port
from bench.sources import TOPICS, _counted
from memsys import Settings
from memsys.engine import Engine, MemoryDefaults
from memsys.ingest.sources.kinds import CONNECTORS
from memsys.store.server import stop_server

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tools.source_servers import S3_ACCESS_KEY, SENTINEL, Dovecot, Page, VersityGW, WebDAV, Website, html, mail  # noqa: E402

DOCUMENTS = 20


def _text(i: int, extra: str = "", kind: str = "") -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (f"{kind} note {i} is about {topic}. It describes how {topic} form, change over centuries and shape "
            f"the lives of the people nearby.{extra}")


def _fetch_counter() -> list[int]:
    """Counts the documents the engine's connectors fetch (the real connectors, wrapped)."""
    fetched = [0]
    for kind in ("s3", "website", "imap", "webdav"):
        factory = CONNECTORS[kind]

        def made(spec: Any, secret: Any, factory: Any = factory) -> Any:
            connector = factory(spec, secret)
            real = connector.fetch

            def fetch(entry: Any, folder: Path) -> Path:
                fetched[0] += 1
                return real(entry, folder)

            connector.fetch = fetch
            return connector

        CONNECTORS[kind] = made
    return fetched


def _kind(engine: Engine, calls: list[int], fetched: list[int], name: str, kind: str, location: str,
          change: Callable[[], None], options: dict[str, str], credential: str | None) -> Iterator[Result]:
    engine.sources.add(name, kind, location, defaults=MemoryDefaults(project="bench", repo=name, agent="bench"),
                       options=options, credential=credential)
    figures = []
    for step in ("first sync", "unchanged re-sync", "one-document change"):
        if step == "one-document change":
            change()
        before_calls, before_fetched = calls[0], fetched[0]
        start = time.perf_counter()
        record = engine.sources.sync(name)
        seconds = time.perf_counter() - start
        if record.state != "done":
            raise RuntimeError(f"{name} {step}: {record.state}: {record.error}")
        figures.append((seconds, calls[0] - before_calls, fetched[0] - before_fetched,
                        record.new + record.changed + record.removed))
    (first_s, first_calls, first_fetched, first_docs), (again_s, again_calls, again_fetched, _), \
        (one_s, one_calls, one_fetched, one_docs) = figures
    yield Result("SR1", f"{kind}: first sync of {DOCUMENTS} documents", first_s, "s", "reported", True,
                 f"{first_calls} provider calls, {first_fetched} fetched, {first_docs} documents")
    yield Result("SR2", f"{kind}: unchanged re-sync, provider calls", again_calls, "calls", "0",
                 again_calls == 0 and again_fetched == 0, f"{again_s:.2f} s, {again_fetched} fetched")
    yield Result("SR3", f"{kind}: one-document change, documents touched", one_docs, "documents", "1", one_docs == 1,
                 f"{one_s:.2f} s, {one_calls} provider calls, {one_fetched} fetched")


def run() -> Iterator[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="memsys-bench-remote-"))
    servers: list[Any] = []
    saved = dict(CONNECTORS)
    try:
        data = tmp / "data"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MEMSYS_", "WEAVIATE_", "OPENAI_"))},
               "MEMSYS_DATA_DIR": str(data), "MEMSYS_EMBEDDING_PROVIDER": "local", "MEMSYS_SERVER_COMPANION": "off",
               "MEMSYS_SERVER_IDLE_SECONDS": "120", "MEMSYS_WEAVIATE_PORT": str(free_port()),
               "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port())}
        settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
        engine = Engine(settings)
        try:
            engine.status.store()
            engine.system.embed_text("warm up")
            calls, fetched = _counted(engine), _fetch_counter()

            s3 = VersityGW(tmp / "s3")
            servers.append(s3)
            client = s3.client()
            client.create_bucket(Bucket="bench-notes")
            for i in range(DOCUMENTS):
                client.put_object(Bucket="bench-notes", Key=f"notes/note-{i:02d}.md", Body=_text(i, kind="S3").encode())
            yield from _kind(engine, calls, fetched, "s3-bench", "s3", f"{s3.endpoint}/bench-notes/notes",
                             lambda: client.put_object(Bucket="bench-notes", Key="notes/note-03.md",
                                                       Body=_text(3, " Edited once.", "S3").encode()),
                             {"access_key_id": S3_ACCESS_KEY}, SENTINEL)

            site = Website()
            servers.append(site)
            links = tuple(f"/note-{i:02d}" for i in range(DOCUMENTS - 1))
            site.pages["/"] = Page(html("Notes", "Every note of the bench.", links))
            for i in range(DOCUMENTS - 1):
                site.pages[f"/note-{i:02d}"] = Page(html(f"Note {i}", _text(i, kind="Website")))

            def edit_page() -> None:
                site.pages["/note-03"] = Page(html("Note 3", _text(3, " Edited once.", "Website")))

            yield from _kind(engine, calls, fetched, "website-bench", "website", site.url("/"), edit_page, {}, None)

            dovecot = Dovecot()
            servers.append(dovecot)
            for i in range(DOCUMENTS):
                dovecot.append(mail(f"Note {i}", _text(i, kind="Mail")))
            yield from _kind(engine, calls, fetched, "imap-bench", "imap", dovecot.location(),
                             lambda: dovecot.append(mail("A new note", _text(99, kind="Mail"))), {"username": dovecot.user}, SENTINEL)

            dav = WebDAV(tmp / "dav")
            servers.append(dav)
            (dav.folder / "notes").mkdir()
            for i in range(DOCUMENTS):
                (dav.folder / "notes" / f"note-{i:02d}.md").write_text(_text(i, kind="WebDAV"))
            yield from _kind(engine, calls, fetched, "webdav-bench", "webdav", dav.location + "notes/",
                             lambda: (dav.folder / "notes" / "note-03.md").write_text(_text(3, " Edited once.", "WebDAV")),
                             {"username": dav.user}, SENTINEL)
        finally:
            engine.close()
            stop_server(settings)
    finally:
        CONNECTORS.clear()
        CONNECTORS.update(saved)
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
