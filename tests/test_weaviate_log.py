"""Weaviate's own log: read for what matters (disk pressure reported by a real Weaviate
server run with memsys's embedded settings, its disk warning threshold set below what the
disk already uses; a failed start and other errors in the formats Weaviate and the memsys
supervisor write; nothing from ordinary lines; no secret in what is shown), and kept within
its size by the supervisor while the server runs."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

from memsys.config import WEAVIATE_VERSION, Settings
from memsys.logs import register_secrets
from memsys.store import embedded_environment
from memsys.store.server_log import weaviate_problems
from memsys.store.supervisor import RotatingLog

from conftest import free_port
from dashboard_support import wait_until


def weaviate_binary() -> Path:
    found = sorted(Settings().weaviate_binary_dir.glob(f"weaviate-v{WEAVIATE_VERSION}-*"))
    assert found, "embedded Weaviate is not built: run `make setup`"
    return found[0]


def test_a_real_weaviate_short_of_disk_is_reported_as_disk_pressure(tmp_path: Path) -> None:
    raft = free_port()
    while free_port() == raft + 1:
        raft = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "TMPDIR")},
        **embedded_environment(),  # its LOG_LEVEL, as memsys runs Weaviate: the warning must get through
        "PERSISTENCE_DATA_PATH": str(tmp_path / "data"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "GO_PROFILING_DISABLE": "true",
        "GRPC_PORT": str(free_port()),
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_IN_LOCALHOST": "true",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(free_port()),
        "CLUSTER_DATA_BIND_PORT": str(free_port()),
        "RAFT_PORT": str(raft),
        "RAFT_INTERNAL_RPC_PORT": str(raft + 1),
        "RAFT_JOIN": f"node1:{raft}",
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "DISK_USE_WARNING_PERCENTAGE": "1",  # any disk in use is "too full"
    }
    log = tmp_path / "weaviate.log"
    with log.open("ab") as out:
        server = subprocess.Popen([str(weaviate_binary()), "--host", "127.0.0.1", "--port", str(free_port()),
                                   "--scheme", "http"], env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(p.kind == "disk_pressure" for p in weaviate_problems(log)), timeout=180,
                   what="a disk warning in Weaviate's log")
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert embedded_environment()["LOG_LEVEL"] == "warning"
    problem = next(p for p in weaviate_problems(log) if p.kind == "disk_pressure")
    assert "disk usage currently at" in problem.message and problem.time is not None
    assert "short of disk space" in problem.meaning


SUPERVISOR_AND_WEAVIATE = """\
2026-11-28T10:00:00+0000 memsys-supervisor: started Weaviate 1.35.2 (pid 41) on http://127.0.0.1:8079
{"action":"startup","level":"info","msg":"configured versions","time":"2026-11-28T10:00:01Z"}
{"level":"warning","msg":"something ordinary","time":"2026-11-28T10:00:02Z"}
{"action":"set_shard_read_only","level":"warning","msg":"Set READONLY, disk usage currently at 97.10%, threshold set to 90.00%","path":"/d","time":"2026-11-28T10:05:00Z"}
{"level":"error","msg":"error while setting default quantization","error":"invalid default quantization for hnsw index: ","time":"2026-11-28T10:05:30Z"}
{"level":"error","msg":"could not open shard","error":"open /d/x: permission denied for key-SENTINEL-e1","time":"2026-11-28T10:06:00Z"}
2026-11-28T10:07:00+0000 memsys-supervisor: Weaviate (pid 41) exited with code 2
2026-11-28T10:07:05+0000 memsys-supervisor: Weaviate exited 3 times within 60 s; giving up
2026-11-28T10:08:00+0000 memsys-supervisor: stopped
"""


def test_problems_are_classified_and_ordinary_lines_ignored(tmp_path: Path) -> None:
    register_secrets(["key-SENTINEL-e1"])
    log = tmp_path / "weaviate.log"
    log.write_text(SUPERVISOR_AND_WEAVIATE, encoding="utf-8")
    problems = weaviate_problems(log)
    assert [p.kind for p in problems] == ["disk_pressure", "error", "failed_start", "failed_start"]
    assert problems[1].message == "could not open shard: open /d/x: permission denied for ***"
    assert problems[3].time == dt.datetime(2026, 11, 28, 10, 7, 5, tzinfo=dt.timezone.utc)
    since = dt.datetime(2026, 11, 28, 10, 6, 30, tzinfo=dt.timezone.utc)
    assert [p.kind for p in weaviate_problems(log, since=since)] == ["failed_start", "failed_start"]
    assert len(weaviate_problems(log, limit=1)) == 1


def test_no_log_yet_means_no_problems(tmp_path: Path) -> None:
    assert weaviate_problems(tmp_path / "missing.log") == []


def test_a_problem_just_rotated_into_the_previous_file_is_still_shown(tmp_path: Path) -> None:
    log = tmp_path / "weaviate.log"
    (tmp_path / "weaviate.log.1").write_text(SUPERVISOR_AND_WEAVIATE, encoding="utf-8")
    log.write_text('{"level":"info","msg":"after the rotation","time":"2026-11-28T10:09:00Z"}\n', encoding="utf-8")
    assert [p.kind for p in weaviate_problems(log)] == ["disk_pressure", "error", "failed_start", "failed_start"]


# A real process writing a lot, fast: Weaviate's output as the supervisor's pump sees it.
CHATTY = """
import json, sys
for i in range(4000):
    sys.stdout.write(json.dumps({"level": "warning", "msg": f"line {i:05d} " + "w" * 60}, separators=(",", ":")) + "\\n")
"""


def test_the_supervisors_log_stays_bounded_while_the_server_writes(tmp_path: Path) -> None:
    path = tmp_path / "weaviate.log"
    log = RotatingLog(path, max_bytes=8192, backups=2)
    chatty = subprocess.Popen([sys.executable, "-c", CHATTY], stdout=subprocess.PIPE)
    pump = threading.Thread(target=log.pump, args=(chatty.stdout,))
    pump.start()
    notes = 0
    # The supervisor's own lines, meanwhile, from another thread; at most 200 (about 11 kB,
    # two rotations), so whatever came last, Weaviate's newest line is still kept.
    while notes < 200 and (chatty.poll() is None or notes < 10):
        log.write(f"2026-11-28T10:00:00+0000 memsys-supervisor: note {notes}\n".encode())
        notes += 1
    assert chatty.wait(timeout=120) == 0
    pump.join(timeout=60)
    files = [path.with_name("weaviate.log.2"), path.with_name("weaviate.log.1"), path]
    assert all(p.exists() and p.stat().st_size <= 8192 for p in files), [p.stat().st_size for p in files if p.exists()]
    assert not path.with_name("weaviate.log.3").exists()
    lines = [line for p in files for line in p.read_text(encoding="utf-8").splitlines()]
    whole = [line for line in lines if line.startswith('{"level":"warning","msg":"line ') and line.endswith('w"}')]
    said = [line for line in lines if line.startswith("2026-11-28T10:00:00+0000 memsys-supervisor: note ")]
    assert len(whole) + len(said) == len(lines)  # no line torn or interleaved with another
    numbers = [int(line.split()[1]) for line in whole]
    assert numbers == sorted(numbers) and numbers[-1] == 3999  # the newest kept, in order


def test_the_memsys_server_pipes_weaviates_output_into_its_bounded_log(tmp_path: Path) -> None:
    from memsys.store import server as memsys_server

    settings = Settings.load(env={"MEMSYS_DATA_DIR": str(tmp_path), "MEMSYS_WEAVIATE_PORT": str(free_port()),
                                  "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()), "MEMSYS_SERVER_IDLE_SECONDS": "0",
                                  "MEMSYS_LOG_MAX_BYTES": "4096", "MEMSYS_LOG_BACKUPS": "1"},
                             secrets_path=Path("/nonexistent"))
    log = memsys_server.log_file(settings)
    files = (log.with_name("weaviate.log.1"), log)
    text = lambda: "".join(p.read_text(errors="replace") for p in files if p.exists())  # noqa: E731
    memsys_server.ensure_server(settings)
    try:
        # Weaviate's own lines (its JSON log, the tokenizer's plain lines) reach the file.
        wait_until(lambda: '"level":"warning"' in text(), timeout=120, what="Weaviate's output in weaviate.log")
    finally:
        memsys_server.stop_server(settings)
    assert all(p.stat().st_size <= 4096 for p in files if p.exists())
    assert not log.with_name("weaviate.log.2").exists()
    assert log.read_text().rstrip().endswith("memsys-supervisor: stopped")
