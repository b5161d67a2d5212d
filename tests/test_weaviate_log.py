"""Weaviate's own log read for what matters: disk pressure reported by a real Weaviate
server (its disk warning threshold set below what the disk already uses), a failed start
and other errors in the formats Weaviate and the memsys supervisor write, nothing from
ordinary lines, and no secret in what is shown."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

from memsys.config import WEAVIATE_VERSION, Settings
from memsys.logs import register_secrets
from memsys.store import embedded_environment
from memsys.weaviate_log import weaviate_problems

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
        **embedded_environment(),
        "LOG_LEVEL": "warning",
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
    problem = next(p for p in weaviate_problems(log) if p.kind == "disk_pressure")
    assert "disk usage currently at" in problem.message and problem.time is not None
    assert "short of disk space" in problem.meaning


SUPERVISOR_AND_WEAVIATE = """\
2026-11-28T10:00:00+0000 memsys-supervisor: started Weaviate 1.35.2 (pid 41) on http://127.0.0.1:8079
{"action":"startup","level":"info","msg":"configured versions","time":"2026-11-28T10:00:01Z"}
{"level":"warning","msg":"something ordinary","time":"2026-11-28T10:00:02Z"}
{"action":"set_shard_read_only","level":"warning","msg":"Set READONLY, disk usage currently at 97.10%, threshold set to 90.00%","path":"/d","time":"2026-11-28T10:05:00Z"}
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
