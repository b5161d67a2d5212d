"""Cancel mid-batch and progress per memory, on real Weaviate and the real local embedder.
The only fault injected: the embedder answers one call at a time, when the test lets it
(a gate), so "the middle of a batch" is a moment the test chooses, not a timing guess."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pytest

from memsys import EmbeddingRouter, MemorySystem
from memsys.config import BatchConfig
from memsys.embeddings.cache import EmbeddingCache
from memsys.embeddings.providers import Kind, LocalProvider
from memsys.engine import Engine, JobProgress
from memsys.jobs import batches
from memsys.ingest.memories import MemoryDefaults
from memsys.store import MemoryFilter

from helpers import short_texts, write_rows_csv

DEFAULTS = MemoryDefaults(project="proj", repo="main", agent="importer")
# One batch embedded at a time: "part of a batch embedded" is then never the end of another
# batch that is about to be written, and the gate cannot be opened past the moment wanted.
BATCHES_OF_10 = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                            base_retry_delay=0.05, max_retry_delay=1.0, embed_workers=1)


class GatedLocalProvider(LocalProvider):
    """The real local embedder, answering a call only once the test opens the gate for it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)
        self.calls: list[list[str]] = []  # the calls answered
        self.waiting = 0  # calls waiting at the gate
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        with self._lock:
            self.waiting += 1
        try:
            if not self.gate.acquire(timeout=120):
                raise TimeoutError("the test never let this embedding call through")
        finally:
            with self._lock:
                self.waiting -= 1
        vectors = super().embed(texts, kind)
        with self._lock:
            self.calls.append(list(texts))
        return vectors

    def open(self) -> None:
        """Let every call through from now on."""
        for _ in range(10_000):
            self.gate.release()

    @property
    def sent(self) -> list[str]:
        with self._lock:
            return [t for call in self.calls for t in call]


@pytest.fixture
def gated(memsys_system: MemorySystem, tmp_path: Path,
          job_database: dict[str, str]) -> Iterator[tuple[Engine, GatedLocalProvider]]:
    provider = GatedLocalProvider()
    # On SQLite and PostgreSQL (tests/postgres_support.py), with a data folder (and so a job
    # embedding cache) of this test's own; the store is the session's, so what the other
    # database's run (or an earlier test) stored in this knowledge base is removed first.
    settings = memsys_system.settings.replace(data_dir=tmp_path / "data", **job_database)
    router = EmbeddingRouter(settings, provider=provider, cache=EmbeddingCache(tmp_path / "cache"))
    system = MemorySystem(settings, router=router, store=memsys_system.store)
    memsys_system.store.delete_matching(MemoryFilter(project=DEFAULTS.project))
    engine = Engine(settings, system=system)
    yield engine, provider
    provider.open()  # a job still waiting on the gate finishes instead of hanging the runner
    engine.job_store.close()


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def let_through_until(provider: GatedLocalProvider, what: str, condition: Callable[[], bool]) -> None:
    """Open the gate one call at a time until `condition` holds. It is read only once the
    call let through is answered and the next one waits at the gate: the embedding thread
    has then recorded what that call did, and nothing is embedded while it is read."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        calls = len(provider.calls)
        provider.gate.release()
        wait_for("the embedder answered and the next call waits",
                 lambda: len(provider.calls) > calls and provider.waiting > 0)


def test_progress_moves_per_memory_before_the_first_batch_is_written(gated: tuple[Engine, GatedLocalProvider],
                                                                      tmp_path: Path) -> None:
    engine, provider = gated
    write_rows_csv(tmp_path / "rows.csv", short_texts(40, "moving"))
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=BATCHES_OF_10)
    wait_for("the job runs", lambda: engine.jobs.require(job_id).state == "running")
    let_through_until(provider, "some memories are embedded", lambda: engine.jobs.get(job_id).embedded > 0)
    job = engine.jobs.get(job_id)
    assert job.processed == 0 and 0 < job.embedded < 10  # inside the first batch, before any record
    files = engine.job_store.file_states(job_id)
    assert [(f.name, f.stage(job.state)) for f in files] == [("rows.csv", "embedding")]
    provider.open()
    done = engine.runner.wait(job_id, timeout=300)
    assert done.state == "completed" and done.written == 40 and done.embedded == 0
    assert [(f.name, f.stage(done.state), f.written) for f in engine.job_store.file_states(job_id)] == [("rows.csv", "done", 40)]


def test_cancel_mid_batch_writes_nothing_more_and_resume_imports_exactly_the_rest(
        gated: tuple[Engine, GatedLocalProvider], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, provider = gated
    # Sub-calls of the fewest texts, whatever speed the gate makes the embedder seem to
    # have: a batch is then never embedded whole by one let-through call, so "the middle of
    # a batch" stays the middle until the cancel.
    monkeypatch.setattr(batches, "_SUB_CALL_SECONDS", 0.0)
    texts = short_texts(60, "cancel")
    write_rows_csv(tmp_path / "rows.csv", texts)
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "rows.csv"]), DEFAULTS, config=BATCHES_OF_10)
    wait_for("the job runs", lambda: engine.jobs.require(job_id).state == "running")
    # The first batch written, the next ones part embedded: the middle of a batch.
    let_through_until(provider, "batch 1 is written and a later batch is part embedded",
                      lambda: (j := engine.jobs.get(job_id)).processed >= 10 and 0 < j.embedded < 10)
    at_click = engine.jobs.get(job_id)
    written = at_click.written
    assert at_click.processed == written and written in (10, 20, 30, 40, 50) and 0 < at_click.embedded < 10
    assert engine.jobs.cancel(job_id)
    provider.open()  # the embedder answers at once from now on: only the cancel stops the job
    stopped = engine.runner.wait(job_id, timeout=60)
    count_at_stop = engine.system.count_memories()
    assert stopped.state == "cancelled"
    # What was written stays written and counted; the embedded rest of the batch is not written.
    assert stopped.written == written and stopped.pending == 60 - written and stopped.embedded == 0
    assert count_at_stop == written
    states = {f.name: (f.stage(stopped.state), f.written, f.pending) for f in engine.job_store.file_states(job_id)}
    assert states == {"rows.csv": ("partly done", written, 60 - written)}
    # Nothing is written after the job reported it stopped.
    runner_idle = engine.runner.wait(job_id, timeout=5)
    assert runner_idle.written == written and engine.system.count_memories() == count_at_stop
    first_batch = set(texts[:written])
    sent_before = len(provider.sent)

    engine.jobs.resume(job_id)
    done = engine.runner.wait(job_id, timeout=300)
    assert done.state == "completed" and done.written == 60 and done.failed == 0 and done.pending == 0
    assert engine.system.count_memories() == 60
    # Exactly the rest: nothing of batch 1 embedded or written again.
    assert not first_batch & set(provider.sent[sent_before:])
    assert sum(b.written for b in engine.job_store.batches(job_id)) == 60


def test_a_job_over_reports_no_memories_in_flight(gated: tuple[Engine, GatedLocalProvider], tmp_path: Path) -> None:
    engine, provider = gated
    provider.open()
    write_rows_csv(tmp_path / "good.csv", short_texts(12, "good"))
    (tmp_path / "broken-scan.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    job_id = engine.imports.start(engine.imports.spool_paths([tmp_path / "good.csv", tmp_path / "broken-scan.pdf"]),
                                  DEFAULTS, config=BATCHES_OF_10)
    done: JobProgress = engine.runner.wait(job_id, timeout=300)
    assert done.state == "completed" and done.written == 12 and done.failed == 1
    files = {f.name: f for f in engine.job_store.file_states(job_id)}
    assert files["good.csv"].stage(done.state) == "done"
    broken = files["broken-scan.pdf"]
    assert broken.stage(done.state) == "failed" and broken.unreadable and broken.reason
    assert engine.job_store.embedded_in_flight(job_id) == 0
