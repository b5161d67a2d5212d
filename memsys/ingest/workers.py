"""Readers in worker processes, so a file costs only itself: each file on disk (with
everything inside it, for an archive) is read by a worker process whose address space is
capped (`resource.RLIMIT_AS`) and which must answer within the time limit per file. A
parser that hangs, balloons or crashes on one file is killed and replaced; that file
becomes an `InputProblem` and the import goes on with the next. Cancelling stops a read
within a poll interval, even inside a large file.

Workers are plain `python -c` processes running this module's `_main` (no fork of a
threaded dashboard), kept in a small process-wide pool and fed one file at a time. Given a
`ChunkPlan`, a worker also cuts what it reads into memories, so a text that is slow to cut
costs only its file too. They stream pieces back in small batches, so a large csv never
sits whole in either process. The parent unpickles only the reader's own record types.
"""
from __future__ import annotations

import atexit
import io
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

from memsys.ingest.chunking import Chunker, ChunkSettings
from memsys.ingest.memories import MemoryDefaults, memories_from_pieces
from memsys.ingest.readers.ocr import OcrSettings
from memsys.ingest.readers.reading import make_context, read_disk_file
from memsys.ingest.readers.sources import (
    FieldMapping,
    FileReader,
    InputProblem,
    ReadContext,
    ReadLimits,
    ReadTally,
    SourceText,
    human_size,
)
from memsys.models import Memory

_POLL_SECONDS = 0.25  # how often a waiting reader checks for cancel and its deadline
_BATCH_PIECES = 64
_BATCH_CHARS = 1 << 20
_POOL_SIZE = 2  # idle workers kept; more are started while several reads run at once
_START_SECONDS = 120  # a new worker must be ready (Python started, tokenizer loaded) within this


class ReadCancelled(Exception):
    """The import was cancelled while a file was being read."""


@dataclass(frozen=True)
class ChunkPlan:
    """How the worker turns what it reads into memories (chunking runs there too, so a text
    that is slow to cut costs only its file): the import's defaults, the model's tokenizer
    and the chunk settings."""

    defaults: MemoryDefaults
    provider: str
    model: str
    settings: ChunkSettings | None = None

    def chunker(self) -> Chunker:
        return Chunker.for_model(self.provider, self.model, self.settings)


@dataclass(frozen=True)
class _Request:
    path: str
    name: str
    mapping: FieldMapping
    limits: ReadLimits
    ocr: OcrSettings
    estimate_only: bool
    plan: ChunkPlan | None = None


class _SafeUnpickler(pickle.Unpickler):
    """Only what a worker sends: the reader's records and plain built-in values."""

    _ALLOWED = {
        ("memsys.ingest.readers.sources", "SourceText"),
        ("memsys.ingest.readers.sources", "InputProblem"),
        ("memsys.ingest.readers.sources", "FieldMapping"),
        ("memsys.ingest.readers.sources", "ReadLimits"),
        ("memsys.ingest.workers", "_Request"),
        ("memsys.ingest.workers", "ChunkPlan"),
        ("memsys.ingest.readers.ocr", "OcrSettings"),
        ("memsys.ingest.memories", "MemoryDefaults"),
        ("memsys.ingest.chunking", "ChunkSettings"),
        ("memsys.models", "Memory"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a reader worker sent {module}.{name}, which is not allowed")


def _loads(data: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(data)).load()


_WORKER_MAIN = "import sys; from memsys.ingest.workers import _main; _main(sys.argv[1:])"


class _Worker:
    """One reader process and the two pipes to it."""

    def __init__(self, limits: ReadLimits) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            # Not `-m`: this module is imported by its package first, and runpy warns of that.
            [sys.executable, "-c", _WORKER_MAIN, str(to_child_r), str(from_child_w), str(limits.reader_memory_bytes)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.send = Connection(to_child_w, readable=False)
        self.receive = Connection(from_child_r, writable=False)
        self.memory_bytes = limits.reader_memory_bytes

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended on its own meanwhile
        self.process.wait()
        self.send.close()
        self.receive.close()


def _package_root() -> str:
    """The folder memsys is imported from (memsys/ingest/workers.py is three levels down)."""
    return str(Path(__file__).resolve().parents[2])


class ReaderPool:
    """Worker processes that read one file each at a time. Thread-safe: each `read` takes
    a worker of its own (starting one if none is idle) and gives it back when done."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def _take(self, limits: ReadLimits) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive() and worker.memory_bytes == limits.reader_memory_bytes:
                    return worker
                worker.kill()
        return _Worker(limits)

    def prestart(self, limits: ReadLimits) -> None:
        """Start a worker now unless one is idle, so the next read does not wait for a new
        Python to start: it boots while the caller goes on (an import's spooling and set-up)."""
        with self._lock:
            if len(self._idle) >= _POOL_SIZE or any(
                    w.memory_bytes == limits.reader_memory_bytes and w.alive() for w in self._idle):
                return
            self._idle.append(_Worker(limits))

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < _POOL_SIZE and worker.alive():
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def read(
        self,
        path: Path,
        name: str,
        ctx: ReadContext,
        cancelled: Callable[[], bool] | None = None,
        plan: ChunkPlan | None = None,
    ) -> Iterator[SourceText | InputProblem | Memory]:
        """The pieces of one file on disk (memories, with a `plan`), read in a worker within
        the context's limits; OCR pages read there are counted on the context's tally.
        Raises ReadCancelled when `cancelled()` turns true (checked every quarter second)."""
        limits = ctx.limits
        worker = self._take(limits)
        healthy = False
        try:
            request = _Request(str(path), name, ctx.mapping, limits, ctx.ocr, ctx.estimate_only, plan)
            worker.send.send_bytes(pickle.dumps(request))
            healthy = yield from self._receive(worker, name, ctx, cancelled)
        except (BrokenPipeError, EOFError, OSError):
            yield self._crashed(worker, name, limits)
        finally:
            if healthy:
                self._give_back(worker)
            else:
                worker.kill()

    def file_reader(
        self, cancelled: Callable[[], bool] | None = None, plan: ChunkPlan | None = None
    ) -> FileReader[SourceText | InputProblem | Memory]:
        """`read` as the walk over paths takes it: each file in a worker, with `cancelled`
        and `plan` for every file."""

        def read_file(path: Path, name: str, ctx: ReadContext) -> Iterator[SourceText | InputProblem | Memory]:
            return self.read(path, name, ctx, cancelled, plan)

        return read_file

    def _receive(
        self, worker: _Worker, name: str, ctx: ReadContext, cancelled: Callable[[], bool] | None
    ) -> Iterator[SourceText | InputProblem | Memory]:
        """Relay the worker's pieces; returns True when the worker finished the file and
        can read another. Only time spent waiting for the worker counts against the
        file's time limit (not the time the caller takes over each piece)."""
        # The clock starts when the worker says it has begun the file (a new worker first
        # starts Python and loads the tokenizer, which is not the file's cost).
        current, waited, started_file = name, 0.0, False
        limit = _time_limit(name, ctx)
        while True:
            if cancelled is not None and cancelled():
                raise ReadCancelled(name)
            started = time.monotonic()
            ready = worker.receive.poll(_POLL_SECONDS)
            waited += time.monotonic() - started
            if not ready:
                if started_file and waited > limit:
                    yield InputProblem(current, f"took longer than the limit of {limit:g} s per file "
                                                "to read; it was stopped (the rest of the import goes on)")
                    return False
                if not started_file and waited > _START_SECONDS:
                    yield InputProblem(current, f"could not be read: the reader process did not start within {_START_SECONDS} s")
                    return False
                continue
            kind, payload = _loads(worker.receive.recv_bytes())
            if kind == "pieces":
                yield from payload
            elif kind == "entry":  # the file, or a new member of an archive: its own time limit
                current, waited, started_file = payload, 0.0, True
            elif kind == "ocr_page":  # a scanned page read: each page has its own time limit
                ctx.tally.ocr_page_done()
                waited = 0.0
            elif kind == "done":  # with the scanned pages counted but not read page by page (a preview's estimate)
                ctx.tally.ocr_pages += payload
                return True
            elif kind == "fatal":  # the worker caught MemoryError and is exiting
                yield InputProblem(current, payload)
                return False

    @staticmethod
    def _crashed(worker: _Worker, name: str, limits: ReadLimits) -> InputProblem:
        code = worker.process.wait(timeout=10) if worker.process.poll() is None else worker.process.returncode
        return InputProblem(name, f"made the reader process stop (exit {code}); it may need more than the "
                                  f"{human_size(limits.reader_memory_bytes)} a reader may use")


def _time_limit(name: str, ctx: ReadContext) -> float:
    """How long the import waits for a file: the per-file limit, or for a PDF that may be
    read by OCR, at least the OCR time limit of one page (each page read restarts the clock)."""
    if ctx.ocr.enabled and not ctx.estimate_only and name.lower().endswith((".pdf", ".zip", ".eml")):
        return max(ctx.limits.seconds_per_file, ctx.ocr.page_timeout + 10)
    return ctx.limits.seconds_per_file


_pool: ReaderPool | None = None
_pool_lock = threading.Lock()


def reader_pool() -> ReaderPool:
    """The process-wide pool of reader workers; its idle workers are stopped when the
    process exits (a worker left to notice the closed pipe by itself outlives the command
    that started it)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ReaderPool()
            atexit.register(_pool.close)
        return _pool


# --- the worker side -----------------------------------------------------------------------

# A worker's chunkers, by (provider, model, settings): kept, since loading a tokenizer is slow.
_Chunkers = dict[tuple[str, str, ChunkSettings | None], Chunker]


def _serve(receive: Connection, send: Connection) -> None:
    chunkers: _Chunkers = {}
    while True:
        try:
            request = _loads(receive.recv_bytes())
        except EOFError:
            return
        if not _read_one(request, send, chunkers):
            return  # the process may be in a bad state after MemoryError: the parent starts a new one


def _read_one(request: _Request, send: Connection, chunkers: _Chunkers) -> bool:
    """Read one file for the parent, its pieces (or memories, with a plan) sent in batches;
    False when the read ran out of memory."""
    path = Path(request.path)
    limits = request.limits

    # Archive entries and OCR pages report when they start or end, so each gets its own time limit.
    def entry_started(entry_name: str) -> None:
        send.send_bytes(pickle.dumps(("entry", entry_name)))

    reported = [0]

    def ocr_page_done(pages: int) -> None:
        reported[0] += 1
        send.send_bytes(pickle.dumps(("ocr_page", pages)))

    tally = ReadTally(on_ocr_page=ocr_page_done)
    ctx = make_context(request.mapping, limits, request.ocr, tally, request.estimate_only, on_entry=entry_started)

    batch: list[SourceText | InputProblem | Memory] = []
    chars = 0
    pieces: Iterator[SourceText | InputProblem | Memory] = read_disk_file(path, request.name, ctx)
    plan = request.plan
    if plan is not None:  # the tokenizer is loaded before the file's clock starts
        key = (plan.provider, plan.model, plan.settings)
        if key not in chunkers:
            chunkers[key] = plan.chunker()
            chunkers[key].load()
        pieces = memories_from_pieces(pieces, plan.defaults, chunkers[key])
    send.send_bytes(pickle.dumps(("entry", request.name)))
    try:
        for piece in pieces:
            batch.append(piece)
            chars += len(getattr(piece, "text", "") or getattr(piece, "content", ""))
            if len(batch) >= _BATCH_PIECES or chars >= _BATCH_CHARS:
                send.send_bytes(pickle.dumps(("pieces", batch)))
                batch, chars = [], 0
    except MemoryError:
        batch = []
        send.send_bytes(pickle.dumps(("fatal", f"needed more than the {human_size(limits.reader_memory_bytes)} of "
                                               "memory a reader may use; it was stopped")))
        return False
    except OSError as e:
        batch.append(InputProblem(request.name, f"could not be read: {e.strerror or e}"))
    if batch:
        send.send_bytes(pickle.dumps(("pieces", batch)))
    send.send_bytes(pickle.dumps(("done", tally.ocr_pages - reported[0])))
    return True


def _main(argv: list[str]) -> None:
    receive_fd, send_fd, memory = int(argv[0]), int(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # A reader has no business with the terminal; and its own recursion must not be
    # deep enough to overflow the C stack on a hostile file.
    sys.setrecursionlimit(2000)
    try:
        _serve(Connection(receive_fd, writable=False), Connection(send_fd, readable=False))
    except BrokenPipeError:
        pass  # the process it read for is gone (killed mid-read): it stops at its next page or batch


