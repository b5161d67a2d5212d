"""The job store and runner through database trouble, on real SQLite and real
filesystems: another process holding the write lock past the timeout, a data directory on
a tiny filesystem that fills up and is then freed, a read-only data directory, a process
killed with jobs queued. Each gives a plain reason, leaves no lock held, and the same
process carries on once the cause is gone (no restart). Failed items are read a page at
a time.

The filesystems are tmpfs mounts made by the tests (root only): without root they skip,
unless CI is set, where they fail (CI runs as root)."""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem
from memsys.config import BatchConfig
from memsys.engine import Engine
from memsys.errors import JobStoreError
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import FAILED_PAGE, JobStore, PlannedItem

from conftest import REPO
from dashboard_support import wait_until
from helpers import short_texts, write_rows_csv

DEFAULTS = MemoryDefaults(project="proj", repo="main", agent="faults")
SMALL_BATCHES = BatchConfig(text_type_batch_sizes={"short": 10, "medium": 10, "long": 10, "very_long": 10},
                            base_retry_delay=0.05, max_retry_delay=0.5)
LOCK_TIMEOUT = 1.0  # seconds a write waits for another process's lock in these tests


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the filesystem fault tests need root (they mount a tmpfs); CI runs them as root")
        pytest.skip("needs root to mount a tmpfs")


@contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the test, unmounted after it."""
    require_root()
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


def fill_disk(folder: Path) -> Path:
    """Write into `folder` until its filesystem has no byte left; returns the filler file."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as out:
        for block in (1 << 16, 1):
            try:
                while out.write(b"\0" * block):
                    pass
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


class WriteLockHolder:
    """Another process that takes the job database's write lock (BEGIN IMMEDIATE) and
    keeps it until released."""

    def __init__(self, db: Path) -> None:
        code = (
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(db)!r}, isolation_level=None, timeout=30)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "db.execute('ROLLBACK')\n"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
            self.process.wait(timeout=30)

    def __enter__(self) -> "WriteLockHolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def make_engine(system: MemorySystem, data_dir: Path) -> Engine:
    return Engine(system.settings.replace(data_dir=data_dir, jobs_db_timeout=LOCK_TIMEOUT), system=system)


def spooled_rows(engine: Engine, tmp_path: Path, n: int, subject: str) -> list[Path]:
    return engine.imports.spool_paths([write_rows_csv(tmp_path / f"{subject}.csv", short_texts(n, subject))])


# --- another process holds the write lock past the timeout ------------------------------------

def test_a_lock_held_past_the_timeout_fails_plainly_and_leaves_nothing_held(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", timeout=LOCK_TIMEOUT)
    before = store.create_job({"label": "before"})
    with WriteLockHolder(store.path):
        with pytest.raises(JobStoreError) as caught:
            store.create_job({"label": "while locked"})
        assert caught.value.kind == "locked"
        assert "locked by another process" in str(caught.value)
        # Reads go on while another process writes, and the store's own lock is free:
        # a second failed write fails the same way instead of hanging.
        assert [j.job_id for j in store.list_jobs()] == [before]
        with pytest.raises(JobStoreError):
            store.set_state(before, "cancelled")
    after = store.create_job({"label": "after"})  # same store object, no reopening by hand
    assert {j.job_id for j in store.list_jobs()} == {before, after}
    assert store.require(before).state == "queued"  # the failed write changed nothing


def test_a_read_is_not_held_up_by_a_write_waiting_for_another_process(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", timeout=30)
    job = store.create_job({"label": "x"})
    write_done = threading.Event()
    with WriteLockHolder(store.path) as holder:
        waiting = threading.Thread(target=lambda: (store.set_state(job, "cancelled"), write_done.set()))
        waiting.start()
        assert store.require(job).state == "queued"  # answered while the write still waits
        assert not write_done.is_set()
        holder.release()
        waiting.join(timeout=30)
    assert write_done.is_set() and store.require(job).state == "cancelled"


def test_submit_that_cannot_be_recorded_leaves_the_runner_idle(memsys_system: MemorySystem, tmp_path: Path) -> None:
    engine = make_engine(memsys_system, tmp_path / "data")
    job_id = engine.imports.create(spooled_rows(engine, tmp_path, 5, "idle"), DEFAULTS, config=SMALL_BATCHES)
    with WriteLockHolder(engine.job_store.path):
        with pytest.raises(JobStoreError):
            engine.runner.submit(job_id)
        assert not engine.runner.is_busy()
    engine.runner.submit(job_id)
    assert engine.runner.wait(job_id, timeout=120).state == "completed"


def test_the_runner_survives_a_lock_held_past_the_timeout_and_the_job_resumes(memsys_system: MemorySystem, tmp_path: Path) -> None:
    engine = make_engine(memsys_system, tmp_path / "data")
    job_id = engine.imports.start(spooled_rows(engine, tmp_path, 200, "locked"), DEFAULTS, config=SMALL_BATCHES)
    wait_until(lambda: engine.job_store.require(job_id).processed >= 10, timeout=120, interval=0.05, what="first batches")
    with WriteLockHolder(engine.job_store.path):
        job = engine.runner.wait(job_id, timeout=120)
        assert job.state == "failed" and "locked by another process" in job.error, job
    wait_until(lambda: engine.job_store.flush_unrecorded() == 0, timeout=30, what="the stop written")
    assert engine.job_store.require(job_id).state == "failed"
    engine.runner.resume(job_id)  # the same runner thread takes it
    done = engine.runner.wait(job_id, timeout=300)
    assert (done.state, done.written, done.failed, done.total) == ("completed", 200, 0, 200)
    assert memsys_system.count_memories() == 200


# --- a full disk, then freed ------------------------------------------------------------------

def test_a_full_disk_stops_the_job_plainly_and_the_same_process_resumes_once_freed(memsys_system: MemorySystem, tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny", "64m") as tiny:
        # The data directory (job database, spool, embedding cache) is on the tiny disk;
        # Weaviate is the session's own, elsewhere.
        engine = make_engine(memsys_system, tiny / "data")
        job_id = engine.imports.start(spooled_rows(engine, tmp_path, 400, "full"), DEFAULTS, config=SMALL_BATCHES)
        more = spooled_rows(engine, tmp_path, 5, "more")
        wait_until(lambda: engine.job_store.require(job_id).processed >= 10, timeout=120, interval=0.05, what="first batches")
        filler = fill_disk(tiny)
        job = engine.runner.wait(job_id, timeout=120)
        assert job.state == "failed" and "full" in job.error, job
        assert job.is_resumable
        # While the disk is full, a new import is refused with the same reason and the runner stays idle.
        with pytest.raises(JobStoreError) as caught:
            engine.imports.start(more, DEFAULTS)
        assert caught.value.kind == "disk_full" and "free some space" in str(caught.value)
        assert not engine.runner.is_busy()
        filler.unlink()
        wait_until(lambda: engine.job_store.flush_unrecorded() == 0, timeout=30, what="the stop written")
        engine.runner.resume(job_id)
        done = engine.runner.wait(job_id, timeout=300)
        assert (done.state, done.written, done.failed, done.total) == ("completed", 400, 0, 400)
        assert memsys_system.count_memories() == 400
        engine.job_store.close()


# --- a read-only data directory -------------------------------------------------------------

def test_a_read_only_data_directory_is_told_plainly_and_works_once_writable(memsys_system: MemorySystem, tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "ro", "16m") as mount:
        first = make_engine(memsys_system, mount / "data")
        job_id = first.imports.create(spooled_rows(first, tmp_path, 30, "readonly"), DEFAULTS, config=SMALL_BATCHES)
        first.job_store.close()
        remount(mount, "ro")
        try:
            engine = make_engine(memsys_system, mount / "data")
            with pytest.raises(JobStoreError) as caught:
                engine.runner.submit(job_id)
            assert caught.value.kind == "read_only" and "is read-only" in str(caught.value)
            assert not engine.runner.is_busy()
        finally:
            remount(mount, "rw")
        engine.runner.submit(job_id)  # the same engine and runner, nothing restarted
        done = engine.runner.wait(job_id, timeout=120)
        assert (done.state, done.written) == ("completed", 30)
        engine.job_store.close()


# --- a killed process -------------------------------------------------------------------------

def test_a_job_left_queued_by_a_killed_process_shows_interrupted_and_resumes(memsys_system: MemorySystem, tmp_path: Path) -> None:
    engine = make_engine(memsys_system, tmp_path / "data")
    request = json.loads(json.dumps(engine.job_store.request(
        engine.imports.create(spooled_rows(engine, tmp_path, 12, "killed"), DEFAULTS, config=SMALL_BATCHES))))
    code = (
        "import json, os, signal, sys\n"
        "from memsys.jobs import JobStore\n"
        f"store = JobStore({str(engine.job_store.path)!r})\n"
        "print(store.create_job(json.loads(sys.stdin.read())), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], input=json.dumps(request), capture_output=True, text=True,
                            cwd=str(REPO), timeout=60)
    assert killed.returncode == -9
    job_id = killed.stdout.strip()
    job = engine.job_store.require(job_id)
    assert job.state == "interrupted" and job.is_resumable
    engine.runner.resume(job_id)
    assert engine.runner.wait(job_id, timeout=120).written == 12


# --- failed items a page at a time ------------------------------------------------------------

def test_failed_items_are_read_a_page_at_a_time_everywhere(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_id = store.create_job({"label": "many failures"})
    n = FAILED_PAGE * 5 + 7
    store.add_items(job_id, [PlannedItem.unreadable(seq, f"file{seq}.txt", f"reason {seq}") for seq in range(n)])
    assert store.failed_counts(job_id) == (n, 0)
    pages = [store.failed_items(job_id, offset=p * FAILED_PAGE) for p in range(6)]
    assert [len(p) for p in pages] == [FAILED_PAGE] * 5 + [7]
    assert [f.seq for f in store.iter_failed_items(job_id, page=100)] == list(range(n))
    out = io.StringIO()
    assert store.write_failed_csv(job_id, out) == n
    lines = out.getvalue().splitlines()
    assert lines[0] == "Item,Reason,Kind of error,Can retry,Content" and len(lines) == n + 1
    assert lines[-1].startswith(f"file{n - 1}.txt,reason {n - 1},input,no (fix the file)")
