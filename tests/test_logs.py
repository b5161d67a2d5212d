"""memsys's own log and the audit trail, without Weaviate: one JSON object per line with
the job id and batch from the context, no secret in any line whatever a message or an
exception says, a size-bounded rotation shared by processes, the reader's filters, follow,
the `logs` command, and an audit table that refuses every edit."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memsys.audit import AuditAction, AuditOutcome, AuditTrail
from memsys.config import ConfigError, Settings
from memsys.errors import JobStoreError
from memsys.logs import (
    LOG_FILE,
    LogQuery,
    configure_logging,
    event,
    follow_logs,
    get_logger,
    job_context,
    log_files,
    log_position,
    read_logs,
)

from conftest import REPO, run_memsys

# Shaped like no known key, so only the configured-secret scrubbing can catch it.
SENTINEL = "SENTINEL-not-a-key-4f2a9c7e1b"
URL_PASSWORD = "pw-SENTINEL-93bd51"


def settings_for(data_dir: Path, **env: str) -> Settings:
    return Settings.load(env={"MEMSYS_DATA_DIR": str(data_dir), **env}, secrets_path=Path("/none"))


def lines_of(data_dir: Path) -> list[dict]:
    text = "".join(p.read_text(encoding="utf-8") for p in log_files(data_dir / "logs"))
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_is_one_json_object_with_time_level_component_job_batch_event_and_fields(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path))
    with job_context("job-1", batch=3):
        get_logger("pipeline").info("batch %d done", 3, extra=event("batch.done", written=10, seconds=0.5))
    get_logger("cache").warning("outside any job")
    first, second = lines_of(tmp_path)
    assert list(first)[:8] == ["time", "level", "component", "process", "job_id", "batch", "event", "message"]
    assert (first["level"], first["component"], first["job_id"], first["batch"]) == ("INFO", "pipeline", "job-1", 3)
    assert (first["event"], first["message"], first["written"], first["seconds"]) == ("batch.done", "batch 3 done", 10, 0.5)
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None
    assert (second["job_id"], second["batch"], second["component"]) == (None, None, "cache")


def test_the_job_id_set_in_one_thread_does_not_leak_into_another(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path))
    log = get_logger("pipeline")

    def other() -> None:
        log.info("from another thread")

    with job_context("job-2"):
        log.info("inside the job")
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    by_message = {line["message"]: line["job_id"] for line in lines_of(tmp_path)}
    assert by_message == {"inside the job": "job-2", "from another thread": None}


def test_a_configured_secret_never_reaches_the_file_or_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings_for(tmp_path, OPENAI_API_KEY=SENTINEL,
                                   OPENAI_BASE_URL=f"http://user:{URL_PASSWORD}@127.0.0.1:9/v1",
                                   MEMSYS_LOG_LEVEL="INFO"))
    log = get_logger("pipeline")
    log.warning("the key was %s", SENTINEL)
    log.error(f"in the message itself: {SENTINEL} and {URL_PASSWORD}")
    log.info("in the fields", extra=event("x", reason=f"Bearer {SENTINEL}", nested={"list": [SENTINEL]}))
    try:
        raise RuntimeError(f"an exception carrying {SENTINEL}")
    except RuntimeError:
        log.exception("an error with a traceback")
    written = (tmp_path / "logs" / LOG_FILE).read_text(encoding="utf-8")
    err = capsys.readouterr().err
    assert len(written.splitlines()) == 4 and "***" in written and "an exception carrying ***" in written
    assert SENTINEL not in written and URL_PASSWORD not in written
    assert SENTINEL not in err and URL_PASSWORD not in err and err.count("\n") == 4


def test_stderr_gets_only_the_configured_level_and_the_file_gets_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings_for(tmp_path, MEMSYS_LOG_LEVEL="error"))
    get_logger("pipeline").info("quiet on stderr")
    get_logger("pipeline").error("loud")
    err = capsys.readouterr().err
    assert "loud" in err and "quiet on stderr" not in err
    assert [line["message"] for line in lines_of(tmp_path)] == ["quiet on stderr", "loud"]


def test_an_unknown_log_level_is_a_clear_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEMSYS_LOG_LEVEL is 'loud'"):
        settings_for(tmp_path, MEMSYS_LOG_LEVEL="loud")


def test_rotation_keeps_the_log_within_its_files_and_size(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path, MEMSYS_LOG_MAX_BYTES="8192", MEMSYS_LOG_BACKUPS="2"))
    log = get_logger("pipeline")
    for i in range(3000):
        log.info("line %d %s", i, "x" * 100)
    files = log_files(tmp_path / "logs")
    assert [p.name for p in files] == [f"{LOG_FILE}.2", f"{LOG_FILE}.1", LOG_FILE]
    assert all(p.stat().st_size <= 8192 for p in files)
    newest = read_logs(tmp_path / "logs", LogQuery(limit=1))
    assert newest[0].message.startswith("line 2999 ")


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from memsys.config import Settings
    from memsys.logs import configure_logging, get_logger
    configure_logging(Settings(data_dir=Path(sys.argv[1]), log_max_bytes=8192, log_backups=3))
    log = get_logger("writer")
    for i in range(1500):
        log.info("process %s line %d %s", sys.argv[2], i, "y" * 80)
    """
)


def test_two_processes_sharing_the_log_keep_it_bounded(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], env=env) for name in ("a", "b")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    files = log_files(tmp_path / "logs")
    assert len(files) == 4
    assert all(p.stat().st_size <= 8192 for p in files), [p.stat().st_size for p in files]
    raw = [line for p in files for line in p.read_text(encoding="utf-8").splitlines()]
    kept = read_logs(tmp_path / "logs", LogQuery(limit=10_000))
    assert len(kept) == len(raw) > 100 and all(line.message.endswith("y" * 80) for line in kept)  # no torn line
    for name in ("a", "b"):  # each process's lines in the order it wrote them, none twice
        numbers = [int(line.message.split()[3]) for line in kept if line.message.split()[1] == name]
        assert numbers == sorted(set(numbers))


def test_the_reader_filters_by_level_component_job_time_and_text(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path))
    with job_context("job-a"):
        get_logger("pipeline").info("a info")
        get_logger("retry").warning("a retry")
    with job_context("job-b"):
        get_logger("pipeline").error("b error")
    folder = tmp_path / "logs"
    messages = lambda q: [line.message for line in read_logs(folder, q)]  # noqa: E731
    assert messages(LogQuery(job_id="job-a")) == ["a info", "a retry"]
    assert messages(LogQuery(level="WARNING")) == ["a retry", "b error"]
    assert messages(LogQuery(components=("pipeline",))) == ["a info", "b error"]
    assert messages(LogQuery(text="RETRY")) == ["a retry"]
    assert messages(LogQuery(limit=1)) == ["b error"]
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    assert messages(LogQuery(since=future)) == [] and len(messages(LogQuery(until=future))) == 3


def test_a_torn_line_is_skipped_and_the_rest_is_read(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path))
    get_logger("pipeline").info("before")
    with (tmp_path / "logs" / LOG_FILE).open("a", encoding="utf-8") as f:
        f.write('{"time": "2026-01-01T00:00:00+00:00", "lev\n')
    get_logger("pipeline").info("after")
    assert [line.message for line in read_logs(tmp_path / "logs", LogQuery())] == ["before", "after"]


def wait_for(condition, timeout: float = 60, what: str = "the condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def test_follow_yields_new_lines_only_and_goes_on_across_rotations(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path, MEMSYS_LOG_MAX_BYTES="4096", MEMSYS_LOG_BACKUPS="3"))
    log = get_logger("pipeline")
    log.info("old line")
    seen: list[str] = []
    done = threading.Event()
    # Taken here, not when the thread first runs: a line written before the thread is
    # scheduled is still "new".
    start = log_position(tmp_path / "logs")

    def follow() -> None:
        for line in follow_logs(tmp_path / "logs", LogQuery(job_id="job-f"), start=start, poll=0.02, stop=done.is_set):
            seen.append(line.message)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        for i in range(40):
            with job_context("job-f"):
                log.info("new %d %s", i, "z" * 120)  # about 300 bytes a line: a rotation every 13 lines
            with job_context("job-other"):
                log.info("not this job")
            # Like `tail -F`, a follower keeps up with a writer that does not rotate twice
            # between two of its reads: the writer waits until this line is seen.
            wait_for(lambda: len(seen) > i, what=f"line {i}")
    finally:
        done.set()
        reader.join(timeout=30)
    assert not reader.is_alive()  # stop() ends it even while nothing is written
    assert seen == [f"new {i} {'z' * 120}" for i in range(40)]
    assert len(log_files(tmp_path / "logs")) == 4


class Follower:
    """`memsys logs --follow` as a real process; its output gathered by threads."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "MEMSYS_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, "-m", "memsys", "logs", "--follow", *args], env=env,
                                        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._gather, args=(stream, into), daemon=True)
                         for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _gather(stream, into: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            into.append(line.rstrip("\n"))

    def stop(self, signum: int) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        code = self.process.wait(timeout=60)
        for reader in self._readers:
            reader.join(timeout=10)
        return code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_logs_follow_prints_the_jobs_new_lines_and_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    configure_logging(settings_for(tmp_path))
    log = get_logger("retry")
    with job_context("job-f"):
        log.warning("written before")
    follower = Follower(tmp_path, "--json", "--job", "job-f")
    try:
        wait_for(lambda: any(line.startswith("following ") for line in follower.err) or follower.process.poll() is not None,
                 what="the follower to start")
        assert follower.process.poll() is None, follower.err
        with job_context("job-other"):
            log.warning("another job's line")
        with job_context("job-f", batch=4):
            log.warning("written while following")
        wait_for(lambda: len(follower.out) >= 2, what="the new line on the follower's output")
    finally:
        code = follower.stop(signum)
    assert code == 0, follower.err
    shown = [json.loads(line) for line in follower.out]
    assert [(line["message"], line["batch"]) for line in shown] == [("written before", None),
                                                                   ("written while following", 4)]


def test_the_logs_command_prints_a_jobs_lines(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path))
    with job_context("20260101-000000-abcdef", batch=2):
        get_logger("retry").warning("retrying an embedding request in 0.50 s")
    get_logger("pipeline").info("another job's line")
    env = {"MEMSYS_DATA_DIR": str(tmp_path)}
    shown = run_memsys(["logs", "--job", "20260101-000000-abcdef"], env)
    assert shown.returncode == 0, shown.stderr
    assert "WARNING retry job 20260101-000000-abcdef batch 2: retrying an embedding request in 0.50 s" in shown.stdout
    assert "another job's line" not in shown.stdout
    as_json = run_memsys(["logs", "--level", "WARNING", "--json"], env)
    assert [json.loads(line)["message"] for line in as_json.stdout.splitlines()] == [
        "retrying an embedding request in 0.50 s"]
    wrong = run_memsys(["logs", "--since", "yesterday"], env)
    assert wrong.returncode == 2 and "not a time span" in wrong.stderr


def test_the_audit_trail_keeps_records_and_refuses_every_edit(tmp_path: Path) -> None:
    configure_logging(settings_for(tmp_path, OPENAI_API_KEY=SENTINEL))
    trail = AuditTrail(tmp_path / "jobs.sqlite3")
    trail.record(AuditAction.MEMORIES_DELETED, "alice", target="Memory", details={"filter": {"project": "p"}, "count": 4})
    trail.record(AuditAction.SETTINGS_CHANGED, "bob", outcome=AuditOutcome.REFUSED, details={"reason": f"key {SENTINEL}"})
    newest, first = trail.records()
    assert (first.actor, first.action, first.details) == ("alice", "memories.deleted", {"filter": {"project": "p"}, "count": 4})
    assert (newest.outcome, newest.details["reason"]) == ("refused", "key ***")
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    assert [r.actor for r in trail.records(action="memories.deleted")] == ["alice"]
    assert SENTINEL.encode() not in (tmp_path / "jobs.sqlite3").read_bytes() + (tmp_path / "jobs.sqlite3-wal").read_bytes()
    audit_lines = [line for line in lines_of(tmp_path) if line["component"] == "audit"]
    assert [line["event"] for line in audit_lines] == ["audit.memories.deleted", "audit.settings.changed"]


def test_a_log_folder_that_cannot_be_written_loses_lines_quietly_and_logging_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a folder")  # as a read-only or full volume would: every open fails (root included)
    configure_logging(settings_for(tmp_path, MEMSYS_LOG_LEVEL="CRITICAL"))
    log = get_logger("pipeline")
    log.info("lost one")
    log.info("lost two")
    said = capsys.readouterr().err
    assert said.count("cannot write the log") == 1 and "lines are lost until it can" in said
    blocker.unlink()
    log.info("written again")
    assert [line["message"] for line in lines_of(tmp_path)] == ["written again"]


def test_an_audit_trail_that_cannot_be_written_says_why_and_opens_once_it_can(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    trail = AuditTrail(blocker / "jobs.sqlite3")  # nothing opened yet: an engine on such a folder still starts
    with pytest.raises(JobStoreError):
        trail.record(AuditAction.CACHE_CLEARED, "alice")
    blocker.unlink()
    trail.record(AuditAction.CACHE_CLEARED, "alice", details={"removed": 3})
    assert [(r.actor, r.details) for r in trail.records()] == [("alice", {"removed": 3})]
    trail.close()
