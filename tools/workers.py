"""Try `memsys worker` on one machine: a PostgreSQL for the queue on loopback and N worker
processes on this data directory (MEMSYS_DATA_DIR and the other settings come from the
environment), each writing its log to a file; stopped by their recorded PIDs.

    python tools/workers.py start 3 [--base-dir .memsys-workers] [--port 55420] [--concurrency 2] [--jobs-too]
    #   prints: MEMSYS_QUEUE_URL=postgresql://postgres@127.0.0.1:55420/memsys
    #   (with --jobs-too: MEMSYS_DATABASE_URL=..., the job database on that PostgreSQL as well)
    python tools/workers.py status    # the queue, each worker: pid, running or not, its log
    python tools/workers.py stop      # SIGTERM to each recorded worker (it finishes its batches), then PostgreSQL

Set the printed setting for the dashboard and the CLI: their imports then go to
the workers (`memsys workers` lists them, `memsys logs` names the worker of each line).
`start` again starts only the workers that are not running (a killed one is replaced).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.postgres_server import LocalPostgres  # noqa: E402

STATE = "workers.json"


def _load(base: Path) -> dict:
    path = base / STATE
    return json.loads(path.read_text()) if path.exists() else {}


def _save(base: Path, state: dict) -> None:
    path = base / STATE
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)


def _is_our_worker(pid: int, started: float) -> bool:
    """The pid is still the worker this tool started (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return "worker" in proc.cmdline() and abs(proc.create_time() - started) < 2 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _postgres_folder(base: Path, port: int) -> Path:
    """Where PostgreSQL keeps its data: in the base folder, unless run as root, when the
    `postgres` user it runs as may not reach the base folder (under /root): then in /tmp."""
    return Path(f"/tmp/memsys-workers-postgres-{port}") if os.geteuid() == 0 else base / "postgres"


def start(base: Path, count: int, port: int, concurrency: int, jobs_too: bool = False) -> int:
    base.mkdir(parents=True, exist_ok=True)
    state = _load(base)
    port = state.get("port", port)
    state.setdefault("postgres", str(_postgres_folder(base, port)))
    server = LocalPostgres(port=port, folder=Path(state["postgres"]))
    if not (server.data / "postmaster.pid").exists():
        server.start()
    if not state.get("url"):
        state["url"] = server.create_database("memsys")
    state["port"] = server.port
    # The queue only (the job database stays this data directory's), or the job database too.
    state["setting"] = "MEMSYS_DATABASE_URL" if jobs_too else state.get("setting", "MEMSYS_QUEUE_URL")
    workers = [w for w in state.get("workers", []) if _is_our_worker(w["pid"], w["started"])]
    env = {**os.environ, state["setting"]: state["url"], "PYTHONPATH": str(REPO)}
    while len(workers) < count:
        log = base / f"worker-{len(workers) + 1}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "memsys", "worker", "--concurrency", str(concurrency)], env=env,
                                    cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        workers.append({"pid": proc.pid, "started": psutil.Process(proc.pid).create_time(), "log": str(log)})
    state["workers"] = workers
    _save(base, state)
    print(f"{state['setting']}={state['url']}")
    for w in workers:
        print(f"worker pid {w['pid']}, log {w['log']}")
    return 0


def status(base: Path) -> int:
    state = _load(base)
    if not state:
        print(f"nothing started under {base}")
        return 1
    print(f"{'queue and job database' if state.get('setting') == 'MEMSYS_DATABASE_URL' else 'queue'}: {state['url']}")
    for w in state.get("workers", []):
        alive = "running" if _is_our_worker(w["pid"], w["started"]) else "not running"
        print(f"worker pid {w['pid']}: {alive}, log {w['log']}")
    return 0


def stop(base: Path, timeout: float = 60) -> int:
    state = _load(base)
    workers = [w for w in state.get("workers", []) if _is_our_worker(w["pid"], w["started"])]
    for w in workers:
        os.kill(w["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in workers:
        while _is_our_worker(w["pid"], w["started"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_our_worker(w["pid"], w["started"]):
            print(f"worker pid {w['pid']} did not stop within {timeout:g} s; killing it")
            os.kill(w["pid"], signal.SIGKILL)
    if state:
        LocalPostgres(port=state["port"], folder=Path(state["postgres"])).stop()
        state["workers"] = []
        _save(base, state)
        print(f"stopped {len(workers)} workers and the queue's PostgreSQL (its data is kept in {state['postgres']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-dir", type=Path, default=Path(".memsys-workers"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start PostgreSQL and N workers")
    p.add_argument("count", type=int, nargs="?", default=3)
    p.add_argument("--port", type=int, default=55420, help="PostgreSQL's port on 127.0.0.1")
    p.add_argument("--concurrency", type=int, default=2, help="batches each worker runs at once")
    p.add_argument("--jobs-too", action="store_true",
                   help="keep the job database on that PostgreSQL too (MEMSYS_DATABASE_URL), as on several machines")
    sub.add_parser("status", help="the queue and each worker")
    sub.add_parser("stop", help="stop the workers (SIGTERM, by PID), then PostgreSQL")
    args = parser.parse_args(argv)
    base = args.base_dir.resolve()
    if args.command == "start":
        return start(base, args.count, args.port, args.concurrency, args.jobs_too)
    if args.command == "status":
        return status(base)
    return stop(base)


if __name__ == "__main__":
    sys.exit(main())
