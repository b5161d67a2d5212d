"""Saved sources (issue 22): for a folder and a git repository (file://) of DOCUMENTS short
documents, the first sync, an unchanged re-sync and a one-document change: seconds,
provider calls (requests that reached the embedder) and documents touched (new + changed +
removed). Goals: 0 provider calls for the unchanged re-sync, 1 document touched by the
one-document change. Fresh data directory and embedding cache, the local embedder."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.common import Result
from bench.pipeline import free_port
from memsys import Settings
from memsys.engine import Engine, MemoryDefaults
from memsys.store.server import stop_server

DOCUMENTS = 20
TOPICS = ["rivers", "mountains", "deserts", "forests", "glaciers", "islands", "volcanoes", "lakes", "caves", "coasts"]


def _write(folder: Path, i: int, extra: str = "") -> None:
    topic = TOPICS[i % len(TOPICS)]
    (folder / f"note-{i:02d}.md").write_text(
        f"Note {i} is about {topic}. It describes how {topic} form, change over centuries and shape "
        f"the lives of the people nearby.{extra}\n", encoding="utf-8")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=Bench", "-c", "user.email=bench@example.com", *args],
                   check=True, capture_output=True)


def _counted(engine: Engine) -> list[int]:
    provider: Any = engine.system.router.provider
    calls = [0]
    embed = provider.embed

    def counting(texts: Any, kind: Any) -> Any:
        calls[0] += 1
        return embed(texts, kind)

    provider.embed = counting
    return calls


def _kind(engine: Engine, calls: list[int], name: str, kind: str, location: str,
          change: Callable[[], None]) -> Iterator[Result]:
    engine.sources.add(name, kind, location, defaults=MemoryDefaults(project="bench", repo=name, agent="bench"))
    figures = []
    for step in ("first sync", "unchanged re-sync", "one-document change"):
        if step == "one-document change":
            change()
        before = calls[0]
        start = time.perf_counter()
        record = engine.sources.sync(name)
        seconds = time.perf_counter() - start
        if record.state != "done":
            raise RuntimeError(f"{name} {step}: {record.state}: {record.error}")
        touched = record.new + record.changed + record.removed
        figures.append((step, seconds, calls[0] - before, touched))
    (_, first_s, first_calls, first_docs), (_, again_s, again_calls, _), (_, one_s, one_calls, one_docs) = figures
    yield Result("SR1", f"{kind}: first sync of {DOCUMENTS} documents", first_s, "s", "reported", True,
                 f"{first_calls} provider calls, {first_docs} documents")
    yield Result("SR2", f"{kind}: unchanged re-sync, provider calls", again_calls, "calls", "0", again_calls == 0,
                 f"{again_s:.2f} s")
    yield Result("SR3", f"{kind}: one-document change, documents touched", one_docs, "documents", "1", one_docs == 1,
                 f"{one_s:.2f} s, {one_calls} provider calls")


def run() -> Iterator[Result]:
    with tempfile.TemporaryDirectory(prefix="memsys-bench-sources-") as tmp:
        data = Path(tmp) / "data"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MEMSYS_", "WEAVIATE_", "OPENAI_"))},
               "MEMSYS_DATA_DIR": str(data), "MEMSYS_EMBEDDING_PROVIDER": "local", "MEMSYS_SERVER_COMPANION": "off",
               "MEMSYS_SERVER_IDLE_SECONDS": "120", "MEMSYS_WEAVIATE_PORT": str(free_port()),
               "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port())}
        settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
        folder = data / "folder"
        folder.mkdir(parents=True)
        repo = data / "repo"
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        for i in range(DOCUMENTS):
            _write(folder, i)
            _write(repo, i + 100)
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", "notes")
        engine = Engine(settings)
        try:
            # The server started and the embedder loaded before anything is measured.
            engine.status.store()
            engine.system.embed_text("warm up")
            calls = _counted(engine)
            yield from _kind(engine, calls, "folder-bench", "folder", str(folder),
                             lambda: _write(folder, 3, " Edited once."))

            def commit() -> None:
                _write(repo, 103, " Edited once.")
                _git(repo, "commit", "-q", "-am", "edit one note")

            yield from _kind(engine, calls, "git-bench", "git", f"file://{repo}", commit)
        finally:
            engine.close()
            stop_server(settings)
