"""The import and jobs CLI as real processes: job id first, exit codes, listing, and an
import killed with SIGKILL at several points that resumes to exactly the same result."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from memsys import MemorySystem, Settings
from memsys.jobs import JobStore
from memsys.models import Memory

from conftest import REPO, run_memsys
from helpers import short_texts, write_rows_csv


@pytest.fixture
def cli_env(test_env: dict[str, str], base_system: MemorySystem, tmp_path: Path) -> dict[str, str]:
    """The session's data directory, so the CLI uses the session's memsys server (one
    server per data directory), and a collection of this test's own."""
    env = dict(test_env)
    env["MEMSYS_COLLECTION"] = f"Cli_{uuid.uuid4().hex[:10]}"
    return env


def collection(base_system: MemorySystem, env: dict[str, str]) -> MemorySystem:
    return base_system.with_collection(env["MEMSYS_COLLECTION"])


def job_store(env: dict[str, str]) -> JobStore:
    return JobStore(Settings.load(env=env, secrets_path=Path("/none")).jobs_db)


IMPORT_ARGS = ["--project", "proj", "--repo", "main", "--agent", "cli"]


def test_import_prints_the_job_id_first_and_exits_0_when_nothing_failed(cli_env: dict[str, str], base_system: MemorySystem, tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", short_texts(12, "cli"))
    result = run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS, "--tags", "a, b"], cli_env)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("job ")
    assert "completed: 12 written, 0 unchanged, 0 failed, of 12 memories" in result.stdout
    stored = collection(base_system, cli_env).search_memories("cli 3", limit=1)[0]
    assert set(stored.tags) == {"a", "b"} and stored.agent == "cli"


def test_an_import_leaves_no_reader_worker_running_when_it_exits(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "note.md").write_text("# A note\n\nRead in a reader worker, which stops when the command does.\n",
                                      encoding="utf-8")
    result = run_memsys(["import", str(tmp_path / "note.md"), *IMPORT_ARGS], cli_env)
    assert result.returncode == 0, result.stderr
    assert "is still running" not in result.stderr and "ResourceWarning" not in result.stderr, result.stderr


def test_import_exits_1_and_lists_failures_with_reasons(cli_env: dict[str, str], tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "good.csv", ["a good row"])
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 8)
    result = run_memsys(["import", str(tmp_path / "good.csv"), str(tmp_path / "blob.txt"), *IMPORT_ARGS], cli_env)
    assert result.returncode == 1
    assert "1 written" in result.stdout and "1 failed" in result.stdout
    assert "failed: blob.txt: " in result.stdout


def test_a_missing_path_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_memsys(["import", str(tmp_path / "nope.txt"), *IMPORT_ARGS], cli_env)
    assert result.returncode == 2
    assert "not found:" in result.stderr and "nope.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_jobs_lists_and_shows_a_job(cli_env: dict[str, str], tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", ["first", "second"])
    job_id = run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], cli_env).stdout.split()[1]
    listing = run_memsys(["jobs"], cli_env)
    assert job_id in listing.stdout and "completed" in listing.stdout
    shown = run_memsys(["jobs", "show", job_id], cli_env)
    assert shown.returncode == 0
    assert "2 written, 0 unchanged, 0 failed, 0 pending" in shown.stdout
    assert "总项目数: 2" in shown.stdout


def test_cancel_of_a_finished_job_says_there_is_nothing_to_cancel(cli_env: dict[str, str], tmp_path: Path) -> None:
    write_rows_csv(tmp_path / "rows.csv", ["only row"])
    job_id = run_memsys(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], cli_env).stdout.split()[1]
    result = run_memsys(["jobs", "cancel", job_id], cli_env)
    assert result.returncode == 0 and "nothing to cancel" in result.stdout


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full = dict(os.environ)
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "memsys", *args], env=full, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _kill_when(proc: subprocess.Popen[str], store: JobStore, job_id: str | None, ready: "callable", timeout: float = 300) -> str:
    """SIGKILL the process as soon as `ready(job)` holds; returns the job id (with None,
    the job the process creates: the newest one not already in the shared job store)."""
    earlier = {j.job_id for j in store.list_jobs(10_000)} if job_id is None else set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_id is None:
            jobs = store.list_jobs(1)
            job_id = jobs[0].job_id if jobs and jobs[0].job_id not in earlier else None
        job = store.get(job_id) if job_id else None
        if job is not None and ready(job):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return job_id  # type: ignore[return-value]
        if proc.poll() is not None:
            raise AssertionError("the import finished before it could be killed")
        time.sleep(0.02)
    raise AssertionError("the kill point was never reached")


def test_an_import_killed_at_several_points_resumes_to_exactly_the_same_result(cli_env: dict[str, str], base_system: MemorySystem, tmp_path: Path) -> None:
    texts = short_texts(3000, "killed")
    write_rows_csv(tmp_path / "rows.csv", texts)
    store = job_store(cli_env)
    proc = _start(["import", str(tmp_path / "rows.csv"), *IMPORT_ARGS], cli_env)
    job_id = _kill_when(proc, store, None, lambda j: j.total > 0 and not j.planned)  # while planning
    assert store.require(job_id).state == "interrupted"
    for fraction in (0.2, 0.55, 0.85):
        proc = _start(["jobs", "resume", job_id], cli_env)
        _kill_when(proc, store, job_id, lambda j, f=fraction: j.planned and j.processed >= f * 3000)
        assert store.require(job_id).state == "interrupted"
    final = run_memsys(["jobs", "resume", job_id], cli_env)
    assert final.returncode == 0, final.stdout + final.stderr
    job = store.require(job_id)
    assert (job.state, job.total, job.written, job.unchanged, job.failed) == ("completed", 3000, 3000, 0, 0)
    system = collection(base_system, cli_env)
    assert system.count_memories() == 3000  # no duplicates
    expected = [Memory(content=t, project="proj", repo="main", agent="cli", source="document-import").uuid for t in texts]
    assert len(system.store.existing(expected)) == 3000  # no loss
