"""The process that owns one data directory's embedded Weaviate. It starts the server in
its own session (so it outlives whoever asked for it), writes the state file once Weaviate
answers, starts Weaviate again if it dies, and stops it with SIGTERM (so it flushes) on
request or after an idle time with no memsys client holding a lease.

Standard library only, and run as a script (`python supervisor.py SERVER_DIR`): it lives
as long as the server, so it stays small. `memsys.store.server` launches it and shares its
small helpers (leases, process identity, atomic JSON files).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
PLAN_FILE = "launch.json"
SECRETS_FILE = "secrets.json"
STOPPED_FILE = "stopped.json"
CHECK_FILE = "checked.json"  # the watch loop's last look: when, clients, idle since
LOG_FILE = "weaviate.log"
COMPANION_LOG_FILE = "companion.log"  # what the companion (the sources' schedule) says on stderr
LOCK_FILE = "lock"
CLIENTS_DIR = "clients"

_TICK = 0.5
_READY_TIMEOUT = 150.0
_STOP_TIMEOUT = 60.0
# Weaviate dying this often within the window is not a hiccup: give up and say so.
_MAX_RESTARTS = 3
_START_ATTEMPTS = 3
_RESTART_WINDOW = 300.0
# The log's bounds when the launch plan names none (memsys passes its log settings).
LOG_MAX_BYTES = 5 * 2**20
LOG_BACKUPS = 5
_LONGEST_LINE = 2**16  # a longer line (a huge stack trace) is written in pieces


def process_start(pid: int) -> str | None:
    """The kernel's start time of a live process (clock ticks since boot), or None when
    there is no such process or it is a zombie. A pid plus its start time names one
    process for good: a recycled pid has another start time."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it do not.
    fields = raw[raw.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def is_alive(pid: int, start: str) -> bool:
    return bool(pid) and process_start(pid) == start


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def locked(server_dir: Path) -> Any:
    """Hold the data directory's server lock: starting, replacing and stopping a server
    happen one at a time, so two Weaviates never share one data directory."""
    fd = os.open(server_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lease_path(server_dir: Path, pid: int, start: str) -> Path:
    return server_dir / CLIENTS_DIR / f"{pid}-{start}"


def live_leases(server_dir: Path) -> list[int]:
    """Pids of the memsys processes holding a lease; leases of dead processes are removed."""
    alive = []
    folder = server_dir / CLIENTS_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    for name in names:
        pid_text, _, start = name.partition("-")
        if pid_text.isdigit() and is_alive(int(pid_text), start):
            alive.append(int(pid_text))
        else:
            try:
                (folder / name).unlink()
            except FileNotFoundError:
                pass
    return alive


def _free_pair() -> int:
    """A free port whose next port is free too (Weaviate wants gossip/data and Raft/Raft
    RPC as such pairs)."""
    import socket

    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("", port + 1))
            except OSError:
                continue
            return int(port)
    raise OSError("no two consecutive free ports")


def _set_parent_death_signal() -> None:
    """Runs in the Weaviate child before exec: if the supervisor dies, even by SIGKILL,
    the kernel sends Weaviate SIGTERM, so no orphan keeps the data directory's files."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class RotatingLog:
    """weaviate.log, bounded while the server runs: a write that would take the file past
    `max_bytes` first renames it to `.1` (`.1` to `.2`, ..., the oldest dropped), so the
    log never takes more than (backups + 1) x max_bytes. Lines are written whole, by one
    writer at a time (Weaviate's output pump and the supervisor's own lines). Only the
    supervisor writes this file, so no lock between processes is needed."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.backups = max(1, backups)
        self._lock = threading.Lock()
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the process

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file.tell() and self._file.tell() + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def pump(self, stream: Any) -> None:
        """Copy a process's output here line by line until it closes (the process ended)."""
        with stream:
            for line in iter(lambda: stream.readline(_LONGEST_LINE), b""):
                self.write(line)


class Supervisor:
    def __init__(self, server_dir: Path) -> None:
        self.dir = server_dir
        plan = read_json(server_dir / PLAN_FILE)
        secrets = read_json(server_dir / SECRETS_FILE)
        if plan is None or secrets is None:
            raise SystemExit(f"memsys-supervisor: {server_dir} has no launch plan or secrets file")
        self.plan = plan
        self.secrets = secrets
        self.log = RotatingLog(server_dir / LOG_FILE, int(plan.get("log_max_bytes", LOG_MAX_BYTES)),
                               int(plan.get("log_backups", LOG_BACKUPS)))
        self.process: subprocess.Popen[bytes] | None = None
        self.pump: threading.Thread | None = None
        self.stop_reason = ""
        self.started_at = time.time()
        self.restarts: list[float] = []
        self.checks = 0
        self.companion: subprocess.Popen[bytes] | None = None
        self.companion_starts: list[float] = []

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.log.write(f"{stamp} memsys-supervisor: {message}\n".encode())

    def drain(self) -> None:
        """After Weaviate has exited: its last lines (a panic, say) reach the log before
        the supervisor says anything about the exit."""
        if self.pump is not None:
            self.pump.join(timeout=5)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_reason = self.stop_reason or f"stop requested ({signal.Signals(signum).name})"

    def environment(self) -> dict[str, str]:
        # Weaviate gets only what it needs: none of the caller's other secrets.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")}
        env.update(self.plan["env"])
        env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] = self.secrets["api_key"]
        env["CLUSTER_BASIC_AUTH_USERNAME"] = self.secrets["cluster_user"]
        env["CLUSTER_BASIC_AUTH_PASSWORD"] = self.secrets["cluster_password"]
        return env

    def start_weaviate(self) -> None:
        plan = self.plan
        self.process = subprocess.Popen(
            [plan["binary"], "--host", plan["host"], "--port", str(plan["port"]), "--scheme", "http",
             "--read-timeout=600s", "--write-timeout=600s"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            # Through a pipe, not the file itself: the supervisor rotates the log while
            # Weaviate runs, which an inherited file descriptor would keep writing past.
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_set_parent_death_signal,
        )
        self.pump = threading.Thread(target=self.log.pump, args=(self.process.stdout,), name="weaviate-log", daemon=True)
        self.pump.start()
        self.say(f"started Weaviate {plan['version']} (pid {self.process.pid}) on http://{plan['host']}:{plan['port']}, "
                 f"gRPC port {plan['grpc_port']}, data {plan['env']['PERSISTENCE_DATA_PATH']}")

    def wait_ready(self) -> bool:
        url = f"http://{self.plan['host']}:{self.plan['port']}/v1/.well-known/ready"
        deadline = time.monotonic() + _READY_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline and not self.stop_reason:
            if self.process.poll() is not None:
                self.drain()
                self.say(f"Weaviate exited with code {self.process.returncode} while starting")
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.say("Weaviate did not become ready" if not self.stop_reason else self.stop_reason)
        return False

    def write_state(self) -> None:
        assert self.process is not None
        plan = self.plan
        state = {
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "weaviate_pid": self.process.pid,
            "weaviate_pid_start": process_start(self.process.pid),
            "host": plan["host"],
            "port": plan["port"],
            "grpc_port": plan["grpc_port"],
            "internal_ports": plan["internal_ports"],
            "node": plan["node"],
            "data_dir": plan["data_dir"],
            "key_file": str(self.dir / SECRETS_FILE),
            "log_file": str(self.dir / LOG_FILE),
            "version": plan["version"],
            "idle_seconds": plan["idle_seconds"],
            "started_at": self.started_at,
            "weaviate_started_at": time.time(),
            "restarts": len(self.restarts),
        }
        write_json(self.dir / STATE_FILE, state)

    def remove_state(self, reason: str) -> None:
        # The reason first: a client that finds the state gone can already say why.
        write_json(self.dir / STOPPED_FILE, {"stopped_at": time.time(), "reason": reason, "pid": os.getpid()})
        state = read_json(self.dir / STATE_FILE)
        if state is not None and state.get("pid") == os.getpid():
            (self.dir / STATE_FILE).unlink(missing_ok=True)

    def stop_weaviate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # Weaviate flushes its memtables on SIGTERM
        try:
            self.process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.say(f"Weaviate did not stop within {_STOP_TIMEOUT:.0f} s of SIGTERM; killing it")
            self.process.kill()
            self.process.wait()
        self.drain()

    # --- the companion: a command the launch plan names, run beside Weaviate ------------
    def start_companion(self) -> None:
        """Start the plan's companion (memsys passes the sources' schedule), with the
        starter's environment and folder, once Weaviate answers. Restarted if it dies, at
        most _MAX_RESTARTS times within _RESTART_WINDOW."""
        command = self.plan.get("companion") or []
        if not command or self.stop_reason:
            return
        now = time.monotonic()
        self.companion_starts = [t for t in self.companion_starts if now - t < _RESTART_WINDOW] + [now]
        if len(self.companion_starts) > _MAX_RESTARTS + 1:
            if len(self.companion_starts) == _MAX_RESTARTS + 2:
                self.say(f"the companion ({command[-1]}) exited {_MAX_RESTARTS + 1} times within {_RESTART_WINDOW:.0f} s;"
                         " not started again")
            return
        env = {**os.environ, "MEMSYS_DATA_DIR": self.plan["data_dir"]}
        cwd = self.plan.get("companion_cwd") or str(self.dir)
        with open(self.dir / COMPANION_LOG_FILE, "ab") as log:
            try:
                self.companion = subprocess.Popen(command, env=env, cwd=cwd if os.path.isdir(cwd) else str(self.dir),
                                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                  preexec_fn=_set_parent_death_signal)
            except OSError as e:
                self.say(f"the companion could not be started: {e.strerror}")
                self.companion = None
                return
        self.say(f"started the companion (pid {self.companion.pid}): {' '.join(command[1:])}")

    def watch_companion(self) -> None:
        if self.companion is not None and self.companion.poll() is not None and not self.stop_reason:
            self.say(f"the companion (pid {self.companion.pid}) exited with code {self.companion.returncode}")
            self.companion = None
            self.start_companion()

    def stop_companion(self) -> None:
        if self.companion is None or self.companion.poll() is not None:
            return
        self.companion.terminate()
        try:
            self.companion.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.say(f"the companion did not stop within {_STOP_TIMEOUT:.0f} s of SIGTERM; killing it")
            self.companion.kill()
            self.companion.wait()

    def new_internal_ports(self) -> None:
        """Fresh cluster ports: on a busy machine a port found free can be taken by
        another program before Weaviate binds it, and Weaviate then exits."""
        gossip, raft = _free_pair(), _free_pair()
        ports = {"gossip": gossip, "data": gossip + 1, "raft": raft, "raft_internal_rpc": raft + 1}
        self.plan["internal_ports"] = ports
        self.plan["env"].update({
            "CLUSTER_GOSSIP_BIND_PORT": str(gossip), "CLUSTER_DATA_BIND_PORT": str(gossip + 1),
            "RAFT_PORT": str(raft), "RAFT_INTERNAL_RPC_PORT": str(raft + 1),
            "RAFT_JOIN": f"{self.plan['node']}:{raft}",
        })

    def start_until_ready(self) -> bool:
        for attempt in range(_START_ATTEMPTS):
            if attempt:
                self.new_internal_ports()
                self.say(f"starting again with other cluster ports (attempt {attempt + 1} of {_START_ATTEMPTS})")
            self.start_weaviate()
            if self.wait_ready():
                return True
            self.stop_weaviate()
            if self.stop_reason:
                return False
        return False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        if not self.start_until_ready():
            self.remove_state(self.stop_reason or "Weaviate did not start; see the log")
            return 1
        self.write_state()
        self.start_companion()
        while True:
            code = self.watch()
            if not self.dir.is_dir():
                self.stop_companion()
                self.stop_weaviate()  # no state or lock left to keep: only Weaviate to stop
                return code
            # Under the lock, so no one starts another Weaviate on these files before this
            # one has flushed and exited; the state goes first, so no new client connects.
            with locked(self.dir):
                if self.stop_reason.startswith("idle") and live_leases(self.dir):
                    self.say("a client arrived as the idle time ran out; staying up")
                    self.stop_reason = ""
                    continue
                reason = self.stop_reason or "Weaviate kept dying; see the log"
                try:
                    self.say(f"stopping: {reason}")
                    self.remove_state(reason)
                finally:
                    self.stop_companion()  # its syncs end before the store they write to
                    self.stop_weaviate()  # whatever happened to the files, Weaviate goes too
            self.say("stopped")
            return code

    def watch(self) -> int:
        """Until there is a reason to stop: restart Weaviate if it dies, count idle time.
        Returns the exit code the supervisor will end with."""
        idle_seconds = float(self.plan["idle_seconds"])
        last_client = time.monotonic()
        idle_since: float | None = None
        while not self.stop_reason:
            time.sleep(_TICK)
            assert self.process is not None
            if self.process.poll() is not None and not self.stop_reason:
                if not self._restart_after_crash():
                    return 1
                continue
            if not self.dir.is_dir():
                # The data directory was deleted (a temporary one, say): nothing to serve.
                self.stop_reason = "the data directory is gone"
                break
            self.watch_companion()
            clients = len(live_leases(self.dir))
            if clients:
                last_client, idle_since = time.monotonic(), None
            else:
                idle_since = idle_since or time.time()
                if idle_seconds > 0 and time.monotonic() - last_client >= idle_seconds:
                    self.stop_reason = f"idle: no memsys client for {idle_seconds:g} s"
            self.checks += 1
            # Status shows it (and tells a supervisor that stopped looking); a test waits for
            # a look taken after a moment instead of sleeping through that moment.
            try:
                write_json(self.dir / CHECK_FILE, {"pid": os.getpid(), "checked_at": time.time(),
                                                   "checks": self.checks, "clients": clients, "idle_since": idle_since})
            except OSError:
                pass  # a full disk: the watch goes on; status says the last look is old
        return 0

    def _restart_after_crash(self) -> bool:
        assert self.process is not None
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < _RESTART_WINDOW] + [now]
        self.drain()
        self.say(f"Weaviate (pid {self.process.pid}) exited with code {self.process.returncode}")
        if len(self.restarts) > _MAX_RESTARTS:
            self.say(f"Weaviate exited {len(self.restarts)} times within {_RESTART_WINDOW:.0f} s; giving up")
            return False
        if not self.start_until_ready():
            return False
        self.write_state()
        return True


def _daemonize() -> None:
    """Fork once more and let the starter's child exit: the supervisor is then nobody's
    child (no zombie in a long-lived dashboard when it stops) and the starter reads its
    pid from our stdout."""
    pid = os.fork()
    if pid > 0:
        print(pid, flush=True)
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: supervisor.py SERVER_DIR", file=sys.stderr)
        return 2
    server_dir = Path(argv[1])
    _daemonize()
    return Supervisor(server_dir).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
