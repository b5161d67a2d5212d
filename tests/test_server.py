"""The memsys server: one embedded Weaviate per data directory, run detached by a
supervisor, shared by every memsys process on the directory, stopped when idle or on
request, and closed to anyone without the directory's key. Real processes throughout:
the CLI, scripts in fresh interpreters, Weaviate itself."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
import weaviate
from weaviate.classes.init import Auth
from weaviate.exceptions import WeaviateBaseError

from memsys import MemorySystem, Settings
from memsys.store import server as memsys_server
from memsys.audit import AuditRecord, AuditTrail
from memsys.jobs import JobStore
from memsys.logs import LogQuery, read_logs

from conftest import REPO, free_port, run_memsys
from dashboard_support import wait_until
from helpers import short_texts, write_rows_csv

IMPORT_ARGS = ["--project", "proj", "--repo", "main", "--agent", "cli"]


def env_for(data_dir: Path, idle: int = 60, port: int | None = None) -> dict[str, str]:
    return {
        "MEMSYS_DATA_DIR": str(data_dir),
        "MEMSYS_WEAVIATE_PORT": str(port or free_port()),
        "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        "MEMSYS_EMBEDDING_PROVIDER": "local",
        "MEMSYS_SERVER_IDLE_SECONDS": str(idle),
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.load(env=env, secrets_path=Path("/nonexistent"))


@pytest.fixture(scope="module")
def data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A data directory for this module's tests (one server start saved per test; each
    test starts the server itself, so none depends on another). Idle time 0: the server
    only stops when a test stops it."""
    env = env_for(tmp_path_factory.mktemp("server-data"), idle=0)
    yield env
    memsys_server.stop_server(settings_of(env))


def python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A script in a fresh interpreter, as a user would run one."""
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)


def weaviate_starts(settings: Settings) -> int:
    """How many times a Weaviate was started for this data directory (from its log)."""
    log = memsys_server.server_dir(settings) / "weaviate.log"
    return log.read_text(errors="replace").count("memsys-supervisor: started Weaviate")


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited supervisor waits for init to reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout: float = 60) -> None:
    wait_until(lambda: not running(pid), timeout, interval=0.1, what=f"process {pid} gone")


# --- start, share, stop ----------------------------------------------------------------

def audit_records(env: dict[str, str], action: str, state: memsys_server.ServerState) -> list[AuditRecord]:
    """The audit trail's `action` records since `state`'s server started."""
    trail = AuditTrail(settings_of(env).jobs_db)
    try:
        return trail.records(action=action, since=dt.datetime.fromtimestamp(state.started_at, dt.timezone.utc))
    finally:
        trail.close()


def server_log(env: dict[str, str], event: str) -> list[Any]:
    """memsys's log lines of one event about the server, oldest first."""
    lines = read_logs(settings_of(env).log_dir, LogQuery(components=("server",), limit=100_000))
    return [line for line in lines if line.event == event]


def checked_after(settings: Settings, state: memsys_server.ServerState, moment: float) -> dict[str, Any]:
    """Wait for the supervisor's first look at its clients taken after `moment`."""
    seen: dict[str, Any] = {}

    def looked() -> bool:
        seen.update(memsys_server.last_check(settings, state) or {})
        return float(seen.get("checked_at", 0)) > moment

    wait_until(looked, max(0.0, moment - time.time()) + 60, interval=0.2, what=f"a supervisor check after {moment}")
    return seen


def test_the_server_outlives_the_cli_command_that_started_it(data_env: dict[str, str]) -> None:
    memsys_server.stop_server(settings_of(data_env))
    started = run_memsys(["server", "start"], data_env)
    assert started.returncode == 0, started.stderr
    assert "memsys server started for" in started.stdout and "http://127.0.0.1:" in started.stdout
    assert "since " in started.stdout
    state = memsys_server.running_state(settings_of(data_env))
    assert state is not None and psutil.pid_exists(state.weaviate_pid)
    assert f"http://127.0.0.1:{state.port}" in started.stdout
    start_record, = audit_records(data_env, "server.started", state)
    assert start_record.actor.endswith("(cli)") and start_record.details == {"pid": state.pid, "url": state.url}
    started_lines = [line for line in server_log(data_env, "server.started") if line.fields.get("pid") == state.pid]
    assert len(started_lines) == 1 and started_lines[0].component == "server" and started_lines[0].fields["seconds"] > 0
    status = run_memsys(["server", "status"], data_env)
    assert status.returncode == 0, status.stderr
    assert "running" in status.stdout and f"pid {state.pid}" in status.stdout
    assert "memory: " in status.stdout and "objects: " in status.stdout
    # Idle time 0: no client at all for several supervisor ticks, and it keeps running.
    assert "memsys clients: 0" in status.stdout and "runs until" in status.stdout
    checked_after(settings_of(data_env), state, time.time() + 3)
    assert memsys_server.running_state(settings_of(data_env)) == state
    check = memsys_server.last_check(settings_of(data_env), state)
    assert check is not None and check["clients"] == 0 and check["idle_since"] is not None


def test_a_second_command_connects_without_starting_anything(data_env: dict[str, str]) -> None:
    settings = settings_of(data_env)
    assert run_memsys(["server", "start"], data_env).returncode == 0
    before, starts = memsys_server.running_state(settings), weaviate_starts(settings)
    counted = python("import memsys; print(memsys.count_memories('no such project'))", data_env)
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "0"
    again = run_memsys(["server", "start"], data_env)
    assert "memsys server already running" in again.stdout
    assert memsys_server.running_state(settings) == before
    assert weaviate_starts(settings) == starts


def test_the_server_stops_by_itself_after_its_idle_time_without_clients(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", idle=3)
    settings = settings_of(env)
    try:
        client, state = memsys_server.connect_client(settings)  # a client holds it up
        # A look taken well past the idle time: a held lease keeps the server running.
        check = checked_after(settings, state, time.time() + 3 + 2)
        assert check["clients"] == 1 and check["idle_since"] is None
        assert memsys_server.running_state(settings) == state
        assert "no memsys client for" not in run_memsys(["server", "status"], env).stdout
        client.close()
        memsys_server.release_client(settings)
        wait_until(lambda: memsys_server.running_state(settings) is None, 60, interval=0.2, what="idle stop")
        wait_gone(state.weaviate_pid)
        assert memsys_server.read_last_stop(settings).startswith("idle: no memsys client for 3 s")
        status = run_memsys(["server", "status"], env)
        assert status.returncode == 3 and "no memsys server runs" in status.stdout and "idle" in status.stdout
    finally:
        memsys_server.stop_server(settings)


def test_a_deleted_data_directory_stops_its_server_and_weaviate(tmp_path: Path) -> None:
    """A temporary data directory removed under a running server (a script's tempdir):
    the supervisor and Weaviate go, instead of serving nothing until the idle time."""
    env = env_for(tmp_path / "data", idle=0)
    state, started = memsys_server.ensure_server(settings_of(env))
    assert started
    shutil.rmtree(tmp_path / "data")
    wait_gone(state.pid)
    wait_gone(state.weaviate_pid)


def test_stop_flushes_and_the_data_is_there_after_the_next_start(data_env: dict[str, str]) -> None:
    env = {**data_env, "MEMSYS_COLLECTION": "Flushed"}
    written = python("import memsys; print(memsys.write_memory('kept across a stop', 'p', 'r', 'a', ['t']))", env)
    assert written.returncode == 0, written.stderr
    state = memsys_server.running_state(settings_of(data_env))
    assert state is not None
    stopped = run_memsys(["server", "stop"], data_env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert memsys_server.running_state(settings_of(data_env)) is None
    assert not running(state.weaviate_pid) and not running(state.pid)
    assert run_memsys(["server", "stop"], data_env).stdout.startswith("no memsys server runs")
    counted = python("import memsys; print(memsys.count_memories())", env)
    assert counted.stdout.strip() == "1", counted.stderr
    # The stop asked for is in the audit trail, once (asking again stopped nothing).
    stop_record, = audit_records(data_env, "server.stopped", state)
    assert stop_record.actor.endswith("(cli)") and stop_record.details["pid"] == state.pid
    assert any(line.fields.get("pid") == state.pid for line in server_log(data_env, "server.stopped"))


def test_stop_during_an_import_fails_its_batch_clearly_and_resume_finishes(data_env: dict[str, str], tmp_path: Path) -> None:
    texts = short_texts(1500, "stopped")
    write_rows_csv(tmp_path / "rows.csv", texts)
    (tmp_path / "small.json").write_text('{"default_batch_size": 20, "max_batch_size": 20, "text_type_batch_sizes": '
                                         '{"short": 20, "medium": 20, "long": 20, "very_long": 20}, "max_retries": 1, '
                                         '"base_retry_delay": 0.1, "max_retry_delay": 0.2, "enable_progress_bar": false}')
    data_env = {**data_env, "MEMSYS_COLLECTION": "Stopped"}
    assert run_memsys(["server", "start"], data_env).returncode == 0
    jobs = JobStore(settings_of(data_env).jobs_db)
    proc = subprocess.Popen([sys.executable, "-m", "memsys", "import", str(tmp_path / "rows.csv"), *IMPORT_ARGS,
                             "--config", str(tmp_path / "small.json")],
                            env={**os.environ, **data_env}, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: bool(jobs.list_jobs(1)) and jobs.list_jobs(1)[0].written >= 100, 300, interval=0.05,
                   what="100 items written")
        assert run_memsys(["server", "stop"], data_env).returncode == 0
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    job = jobs.list_jobs(1)[0]
    assert proc.returncode == 1, out + err
    assert job.state == "failed" and 0 < job.written < 1500 and job.failed == 0, job
    assert "could not be written: the memsys server for" in job.error and "resume the import" in job.error
    assert "stop requested" in job.error
    assert f"jobs resume {job.job_id}" in out
    resumed = run_memsys(["jobs", "resume", job.job_id], data_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = jobs.require(job.job_id)
    assert (done.state, done.total, done.written, done.unchanged, done.failed) == ("completed", 1500, 1500, 0, 0)
    counted = python("import memsys; print(memsys.count_memories('proj'))", data_env)
    assert counted.stdout.strip() == "1500", counted.stderr
    # The outage is in memsys's log, tied to the job: an error, then the stop with its reason;
    # the resume in the audit trail, by the CLI's user.
    lines = read_logs(settings_of(data_env).log_dir, LogQuery(job_id=job.job_id, limit=100_000))
    ends = [line for line in lines if line.event == "import.done"]
    assert ends[0].fields["state"] == "failed" and "stop requested" in ends[0].fields["error"]
    assert ends[-1].fields["state"] == "completed" and ends[-1].fields["written"] == 1500
    assert any(line.level == "ERROR" and line.time <= ends[0].time for line in lines)
    trail = AuditTrail(settings_of(data_env).jobs_db)
    try:
        resumed_record, = trail.records(action="import.resumed", target=job.job_id)
    finally:
        trail.close()
    assert resumed_record.actor.endswith(" (cli)") and resumed_record.outcome == "done"


# --- ownership: one server per data directory --------------------------------------------

def test_two_data_directories_get_two_servers_and_no_cross_talk(tmp_path: Path) -> None:
    port = free_port()  # both directories configured with the same ports
    env_a, env_b = env_for(tmp_path / "a", port=port), env_for(tmp_path / "b", port=port)
    env_b["MEMSYS_WEAVIATE_GRPC_PORT"] = env_a["MEMSYS_WEAVIATE_GRPC_PORT"]
    a, b = MemorySystem(settings_of(env_a)), MemorySystem(settings_of(env_b))
    try:
        a.write_memory("written through A", "p", "r", "a", [])
        b.write_memory("written through B", "p", "r", "b", [])
        state_a, state_b = memsys_server.running_state(a.settings), memsys_server.running_state(b.settings)
        assert state_a is not None and state_b is not None
        assert state_a.port == port and state_b.port != port and state_a.weaviate_pid != state_b.weaviate_pid
        assert [m.content for m in a.search_memories("written", limit=5)] == ["written through A"]
        assert [m.content for m in b.search_memories("written", limit=5)] == ["written through B"]
        # B's key opens nothing on A's server.
        with pytest.raises(WeaviateBaseError):
            weaviate.connect_to_local(port=state_a.port, grpc_port=state_a.grpc_port,
                                      auth_credentials=Auth.api_key(memsys_server.api_key(b.settings))).collections.list_all()
    finally:
        a.close()
        b.close()
        memsys_server.stop_server(a.settings)
        memsys_server.stop_server(b.settings)


def test_a_copied_state_file_naming_another_directory_is_not_used(data_env: dict[str, str], tmp_path: Path) -> None:
    env_a, env_b = {**data_env, "MEMSYS_COLLECTION": "Copied"}, env_for(tmp_path / "b")
    settings_a, settings_b = settings_of(env_a), settings_of(env_b)
    try:
        assert run_memsys(["server", "start"], env_a).returncode == 0
        state_a = memsys_server.running_state(settings_a)
        folder_b = memsys_server.server_dir(settings_b)
        folder_b.mkdir(parents=True)
        (folder_b / "state.json").write_bytes((memsys_server.server_dir(settings_a) / "state.json").read_bytes())
        written = python("import memsys; memsys.write_memory('only in B', 'p', 'r', 'b', [])", env_b)
        assert written.returncode == 0, written.stderr
        state_b = memsys_server.running_state(settings_b)
        assert state_a is not None and state_b is not None and state_b.pid != state_a.pid
        assert memsys_server.running_state(settings_a) == state_a
        counted = python("import memsys; print(memsys.count_memories())", env_a)
        assert counted.stdout.strip() == "0", counted.stderr
    finally:
        memsys_server.stop_server(settings_b)


@pytest.mark.parametrize("killed", ["supervisor", "supervisor and Weaviate"])
def test_a_stale_state_file_is_detected_and_replaced(data_env: dict[str, str], killed: str) -> None:
    settings = settings_of(data_env)
    assert run_memsys(["server", "start"], data_env).returncode == 0
    old, starts = memsys_server.running_state(settings), weaviate_starts(settings)
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    if killed == "supervisor and Weaviate":
        os.kill(old.weaviate_pid, signal.SIGKILL)
    wait_gone(old.pid)
    wait_gone(old.weaviate_pid)  # the kernel tells Weaviate its supervisor died
    assert memsys_server.read_state(settings) == old  # left behind, stale
    status = run_memsys(["server", "status"], data_env)
    assert status.returncode == 3 and "no memsys server runs" in status.stdout
    counted = python("import memsys; print(memsys.count_memories('no such project'))", data_env)
    assert counted.stdout.strip() == "0", counted.stderr
    new = memsys_server.running_state(settings)
    assert new is not None and new.pid != old.pid and weaviate_starts(settings) == starts + 1


# --- no open door --------------------------------------------------------------------------

def test_the_key_is_private_to_the_data_directory_and_never_printed(data_env: dict[str, str]) -> None:
    settings = settings_of(data_env)
    assert run_memsys(["server", "start"], data_env).returncode == 0
    folder = memsys_server.server_dir(settings)
    key = memsys_server.api_key(settings)
    assert stat.S_IMODE((folder / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    shown = run_memsys(["server", "status"], data_env).stdout + run_memsys(["server", "start"], data_env).stdout
    state = memsys_server.running_state(settings)
    assert state is not None
    for text in (shown, (folder / "weaviate.log").read_text(errors="replace"), (folder / "state.json").read_text(),
                 (folder / "launch.json").read_text(), " ".join(psutil.Process(state.pid).cmdline()),
                 " ".join(psutil.Process(state.weaviate_pid).cmdline())):
        assert key not in text
    with pytest.raises(WeaviateBaseError):  # no key, no answer
        weaviate.connect_to_local(port=state.port, grpc_port=state.grpc_port).collections.list_all()


def test_a_supervisor_that_stopped_looking_is_named_with_what_to_do() -> None:
    from memsys.cli.server import describe

    now = time.time()
    state = memsys_server.ServerState(
        pid=4242, pid_start="1", weaviate_pid=4243, host="127.0.0.1", port=8079, grpc_port=50060, internal_ports={},
        node="node1", data_dir="/data", key_file="key", log_file="log", version="1.35.2", idle_seconds=900,
        started_at=now - 600, weaviate_started_at=now - 600)
    looking = memsys_server.ServerStatus(Path("/data"), running=True, state=state, memory_bytes=2**20, objects={},
                                         last_check={"checked_at": now - 0.4, "idle_since": now - 100, "clients": 0})
    assert looking.watch_problem == ""
    assert "no memsys client for 1 min 40 s; stops in about 13 min 20 s" in describe(looking)
    stuck = dataclasses.replace(looking, last_check={"checked_at": now - 45, "idle_since": now - 100, "clients": 0})
    assert re.fullmatch(r"the memsys server's supervisor \(pid 4242\) last checked on Weaviate 4[56] s ago \(it checks "
                        r"every half second\): it may be stuck; `python -m memsys server stop` and start it again",
                        stuck.watch_problem)
    assert stuck.watch_problem in describe(stuck) and "stops in about" not in describe(stuck)
