"""The memsys server: one embedded Weaviate per data directory, shared by every memsys
process on that directory (dashboard, CLI, scripts) and owned by a small supervisor
process (`memsys.store.supervisor`) that outlives whoever started it.

The data directory's `server/` folder holds the state file (who serves this directory,
where, since when), the API key (mode 0600), the server's log and the client leases the
idle timer counts. A process connects only to a server whose state file is in its own data
directory, whose supervisor is alive, and which accepts this directory's key and names
this directory's node; anything else is stale and replaced, never written into.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from memsys.config import WEAVIATE_VERSION, Settings
from memsys.errors import StoreUnavailableError, scrub, weaviate_errors
from memsys.lazy import lazy_module, lazy_names
from memsys.logs import event, get_logger
from memsys.store import supervisor as sup
from memsys.store.client import MAX_RESULTS, client_timeouts
from memsys.units import duration

if TYPE_CHECKING:
    import weaviate
    from weaviate.classes.init import Auth
    from weaviate.embedded import _get_server_ports, get_random_port
else:  # imported on first use (memsys.lazy): `memsys server status` does not load the Weaviate client
    weaviate = lazy_module("weaviate")
    (Auth,) = lazy_names("weaviate.classes.init", "Auth")
    _get_server_ports, get_random_port = lazy_names("weaviate.embedded", "_get_server_ports", "get_random_port")

log = get_logger("server")
HOST = "127.0.0.1"
_START_TIMEOUT = 480.0  # the supervisor tries three times on a busy machine
_STOP_TIMEOUT = 90.0
WATCH_STALE_SECONDS = 30.0  # no look from the supervisor for this long: it is stuck
_NODE_FILE = "node"


class ServerError(StoreUnavailableError):
    """The data directory's Weaviate cannot be started, reached or stopped; says why."""


@dataclass(frozen=True)
class ServerState:
    """What the state file says about the server of one data directory."""

    pid: int
    pid_start: str
    weaviate_pid: int
    host: str
    port: int
    grpc_port: int
    internal_ports: dict[str, int]
    node: str
    data_dir: str
    key_file: str
    log_file: str
    version: str
    idle_seconds: float
    started_at: float
    weaviate_started_at: float
    restarts: int = 0
    weaviate_pid_start: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ServerState":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def supervisor_alive(self) -> bool:
        return sup.is_alive(self.pid, self.pid_start)


@dataclass(frozen=True)
class ClientInfo:
    """A memsys process holding a lease on the server."""

    pid: int
    command: str


@dataclass
class ServerStatus:
    """The server of one data directory, as `memsys server status` and Home show it."""

    data_dir: Path
    running: bool
    state: ServerState | None = None
    memory_bytes: int | None = None
    objects: dict[str, int] | None = None  # collection -> object count
    clients: list[ClientInfo] = field(default_factory=list)
    connections: int | None = None  # open TCP connections to its REST and gRPC ports
    last_stop: dict[str, Any] | None = None  # {"stopped_at": ..., "reason": ...}
    last_check: dict[str, Any] | None = None  # the supervisor's last look: {"checked_at", "idle_since", ...}
    log_file: Path | None = None
    external: str = ""  # a configured server URL: memsys does not run that one

    @property
    def total_objects(self) -> int | None:
        return None if self.objects is None else sum(self.objects.values())

    @property
    def unwatched_seconds(self) -> float:
        """How long ago the supervisor last looked at its clients and Weaviate (it looks
        every half second); 0 when it is not known."""
        if not self.last_check:
            return 0.0
        return max(0.0, time.time() - float(self.last_check.get("checked_at", 0)))

    @property
    def watch_problem(self) -> str:
        """What to say when the supervisor has not looked for so long that it is not doing
        its job (no idle stop, no restart of a Weaviate that died); "" when it is."""
        if not self.running or self.unwatched_seconds <= WATCH_STALE_SECONDS:
            return ""
        pid = self.state.pid if self.state else "?"
        return (f"the memsys server's supervisor (pid {pid}) last checked on Weaviate {duration(self.unwatched_seconds)} "
                "ago (it checks every half second): it may be stuck; `python -m memsys server stop` and start it again")


def server_dir(settings: Settings) -> Path:
    return _resolved(settings.data_dir) / "server"


@functools.lru_cache(maxsize=64)
def _resolved(data_dir: Path) -> Path:
    # Asked on every use of a connection (is the server still the one we know?): resolving
    # the path each time was a measurable share of an import's writes.
    return data_dir.resolve()


def log_file(settings: Settings) -> Path:
    """Embedded Weaviate's own output and its supervisor's lines (rotated by the supervisor)."""
    return server_dir(settings) / sup.LOG_FILE


def _prepare_dir(settings: Settings) -> Path:
    folder = server_dir(settings)
    (folder / sup.CLIENTS_DIR).mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # the key and the leases are nobody else's business
    return folder


# --- the key -------------------------------------------------------------------------
def _secrets(folder: Path) -> dict[str, str]:
    """This data directory's API key and cluster password, made on first start (0600)."""
    path = folder / sup.SECRETS_FILE
    data = sup.read_json(path)
    if data is None:
        data = {
            "api_key": secrets.token_urlsafe(32),
            "cluster_user": "memsys",
            "cluster_password": secrets.token_urlsafe(32),
        }
        sup.write_json(path, data, mode=0o600)
    os.chmod(path, 0o600)
    return data


def api_key(settings: Settings) -> str:
    """The key memsys sends to this data directory's Weaviate. Never print it."""
    return _secrets(_prepare_dir(settings))["api_key"]


# --- state ---------------------------------------------------------------------------
def read_state(settings: Settings) -> ServerState | None:
    data = sup.read_json(server_dir(settings) / sup.STATE_FILE)
    if data is None:
        return None
    try:
        return ServerState.from_json(data)
    except TypeError:
        return None  # a state file from another version of memsys: treated as stale


def state_identity(settings: Settings) -> tuple[int, int] | None:
    """A cheap fingerprint of the state file (inode, mtime): it changes whenever a server
    starts, restarts or goes away, so a connected process knows to follow."""
    try:
        st = os.stat(server_dir(settings) / sup.STATE_FILE)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _is_ours(state: ServerState, settings: Settings) -> bool:
    # A data directory copied with its state file names the original: not ours to use.
    return Path(state.data_dir) == settings.data_dir.resolve()


def running_state(settings: Settings) -> ServerState | None:
    """The state of this data directory's server when its supervisor is alive."""
    state = read_state(settings)
    if state is None or not state.supervisor_alive or not _is_ours(state, settings):
        return None
    return state


def read_last_stop(settings: Settings) -> str:
    """Why the server last stopped ("idle: ...", "stop requested ..."), or ""."""
    data = sup.read_json(server_dir(settings) / sup.STOPPED_FILE)
    return str(data.get("reason", "")) if data else ""


# --- leases: which processes use the server (the idle timer counts them) --------------
class _Leases:
    """One lease file per process and data directory, held while any connection is open
    and removed at exit; the supervisor also drops leases of processes that died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Path, int] = {}
        atexit.register(self._release_all)

    def _path(self, folder: Path) -> Path:
        pid = os.getpid()
        return sup.lease_path(folder, pid, sup.process_start(pid) or "")

    def acquire(self, settings: Settings) -> None:
        folder = _prepare_dir(settings)
        with self._lock:
            self._counts[folder] = self._counts.get(folder, 0) + 1
            self._path(folder).touch()

    def release(self, settings: Settings) -> None:
        folder = server_dir(settings)
        with self._lock:
            left = self._counts.get(folder, 0) - 1
            if left > 0:
                self._counts[folder] = left
                return
            self._counts.pop(folder, None)
            self._path(folder).unlink(missing_ok=True)

    def _release_all(self) -> None:
        with self._lock:
            for folder in self._counts:
                self._path(folder).unlink(missing_ok=True)
            self._counts.clear()


leases = _Leases()


# --- start ---------------------------------------------------------------------------
def binary_path(settings: Settings) -> Path:
    """Where the setup step put the server (the path embedded mode of the client uses)."""
    tag = f"v{WEAVIATE_VERSION}"
    return settings.weaviate_binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def _port_free(port: int) -> bool:
    # gRPC and the cluster data port bind every interface: test the port the same way.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Go's listeners do: a port left in TIME_WAIT by a stopped server is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def _choose_ports(settings: Settings) -> tuple[int, int]:
    """The configured REST and gRPC ports when free; otherwise free ones, so a data
    directory never ends up talking to another directory's server on its ports."""
    port = settings.weaviate_port
    grpc = settings.weaviate_grpc_port or 50060
    if port != grpc and _port_free(port) and _port_free(grpc):
        return port, grpc
    while True:
        port, grpc = get_random_port(), get_random_port()
        if port != grpc:
            return port, grpc


def _node_name(settings: Settings, folder: Path) -> str:
    """A name for this directory's Weaviate node, fixed for its life: Weaviate files its
    shards under the node name, so it must survive port changes. A data directory that
    already holds Weaviate data but no node file was made by the Weaviate client's embedded
    mode, which names the node after its port: that name is kept."""
    path = folder / _NODE_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    data = settings.weaviate_data_dir
    existing = data.is_dir() and any(data.iterdir())
    name = f"Embedded_at_{settings.weaviate_port}" if existing else f"memsys-{secrets.token_hex(4)}"
    path.write_text(name + "\n", encoding="utf-8")
    return name


def adopt_node_name(settings: Settings, name: str) -> None:
    """Give this data directory's Weaviate the node name `name` (a restored backup's node:
    Weaviate's backups restore only onto a node of the same name; mapping names restores
    shards no read finds). Only for a store without collections: a running server is
    stopped, and Weaviate data made under another name is moved aside, not deleted."""
    folder = _prepare_dir(settings)
    path = folder / _NODE_FILE
    try:
        current = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        current = ""
    if current == name:
        return
    stop_server(settings)
    data = settings.weaviate_data_dir
    if data.is_dir() and any(data.iterdir()):
        data.rename(data.with_name(f"weaviate.before-restore-{int(time.time())}"))
    path.write_text(name + "\n", encoding="utf-8")


def embedded_environment(async_indexing: bool = False) -> dict[str, str]:
    """How every Weaviate that memsys runs itself runs (the memsys server, and the nodes of
    `tools/weaviate_cluster.py`): no telemetry (nothing may need the network), CJK
    tokenizers on, warnings and errors logged. The cluster address is pinned to loopback:
    left to itself Weaviate advertises the host's first address, and an IPv6 one breaks its
    RPC server. With `async_indexing` a write returns once stored and the vector index is
    built in the background (a job then waits for `index_queue` to drain before it counts
    as done)."""
    env = {
        "DISABLE_TELEMETRY": "true",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "ENABLE_TOKENIZER_GSE": "true",
        "ENABLE_TOKENIZER_KAGOME_JA": "true",
        # Warnings too: disk and memory pressure (shards turned read-only) are warnings,
        # and Home shows them from this log.
        "LOG_LEVEL": "warning",
        "QUERY_MAXIMUM_RESULTS": str(MAX_RESULTS),
    }
    if async_indexing:
        env["ASYNC_INDEXING"] = "true"
        # Weaviate hands its index queues' chunks to the indexing workers on a scheduler tick,
        # once a second by default: a small import then waited up to a second for its last
        # vectors to be indexed (0.3-1.1 s of a 1-2 s job, by the tick's phase). A tenth of a
        # second costs the scheduler ten cheap checks a second.
        env["QUEUE_SCHEDULER_INTERVAL"] = "100ms"
    return env


def server_environment(settings: Settings, node: str, port: int, grpc_port: int, internal: dict[str, int]) -> dict[str, str]:
    """How the server runs (no secrets here: the supervisor adds those from the key file).
    Every listener that can be bound to loopback is; gRPC and the cluster data port always
    bind every interface, so they refuse requests without the key or cluster password."""
    env = embedded_environment(async_indexing=settings.async_indexing)
    env.update({
        "PERSISTENCE_DATA_PATH": str(settings.weaviate_data_dir.resolve()),
        "QUERY_DEFAULTS_LIMIT": "20",
        "GRPC_PORT": str(grpc_port),
        "CLUSTER_HOSTNAME": node,
        "CLUSTER_IN_LOCALHOST": "true",
        "CLUSTER_BIND_ADDR": HOST,
        "CLUSTER_GOSSIP_BIND_PORT": str(internal["gossip"]),
        "CLUSTER_DATA_BIND_PORT": str(internal["data"]),
        "RAFT_PORT": str(internal["raft"]),
        "RAFT_INTERNAL_RPC_PORT": str(internal["raft_internal_rpc"]),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"{node}:{internal['raft']}",
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_USERS": "memsys",
        "GO_PROFILING_DISABLE": "true",
        # Weaviate's own backups (memsys/store/backup.py): memsys names each backup's folder;
        # this is only the module's default place.
        "ENABLE_MODULES": "backup-filesystem",
        "BACKUP_FILESYSTEM_PATH": str((settings.backups_dir / "weaviate").resolve()),
    })
    return env


def _launch(settings: Settings, folder: Path) -> int:
    """Start the supervisor for this data directory; returns its pid."""
    binary = binary_path(settings)
    if not binary.is_file():
        raise ServerError(
            f"the Weaviate server binary is missing ({binary}); run `make setup` to build it"
        )
    _secrets(folder)
    node = _node_name(settings, folder)
    port, grpc_port = _choose_ports(settings)
    gossip, data, raft, raft_rpc, _profiling = _get_server_ports()
    internal = {"gossip": gossip, "data": data, "raft": raft, "raft_internal_rpc": raft_rpc}
    settings.weaviate_data_dir.mkdir(parents=True, exist_ok=True)
    sup.write_json(folder / sup.PLAN_FILE, {
        "binary": str(binary),
        "version": WEAVIATE_VERSION,
        "host": HOST,
        "port": port,
        "grpc_port": grpc_port,
        "internal_ports": internal,
        "node": node,
        "data_dir": str(settings.data_dir.resolve()),
        "idle_seconds": settings.server_idle_seconds,
        # weaviate.log is bounded like memsys.log (the supervisor rotates it as it runs).
        "log_max_bytes": settings.log_max_bytes,
        "log_backups": settings.log_backups,
        "env": server_environment(settings, node, port, grpc_port, internal),
        # Run beside Weaviate, with the starter's environment and folder (the settings name
        # it: the store runs a command line, it imports nothing of what that command is).
        "companion": [sys.executable, "-m", *shlex.split(settings.server_companion)] if settings.server_companion else [],
        "companion_cwd": os.getcwd(),
    })
    # Its own session: no terminal signal, no process-group kill of the starter reaches
    # it; it forks once more and prints the pid of the process that stays.
    starter = subprocess.run(
        [sys.executable, sup.__file__, str(folder)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        cwd=str(folder),
        timeout=60,
        check=False,
    )
    pid = starter.stdout.strip()
    if starter.returncode != 0 or not pid.isdigit():
        raise ServerError(f"the memsys server for {settings.data_dir} could not be started: "
                          f"{(starter.stderr or starter.stdout).strip()[-500:]}")
    return int(pid)


def _clear_stale(state: ServerState | None, settings: Settings, folder: Path) -> None:
    """A state file whose supervisor is gone (killed): make sure its Weaviate is gone too
    (it gets SIGTERM when the supervisor dies and flushes; wait for that), then forget it.
    A state file naming another data directory only goes: its processes are not ours."""
    if state is not None and _is_ours(state, settings) and not state.supervisor_alive:
        deadline = time.monotonic() + _STOP_TIMEOUT
        while sup.is_alive(state.weaviate_pid, state.weaviate_pid_start):
            if time.monotonic() > deadline:
                os.kill(state.weaviate_pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    (folder / sup.STATE_FILE).unlink(missing_ok=True)


def ensure_server(settings: Settings) -> tuple[ServerState, bool]:
    """The running server of this data directory, started if there is none (a stale
    state file is replaced). Returns the state and whether this call started it."""
    folder = _prepare_dir(settings)
    state = running_state(settings)
    if state is not None:
        return state, False
    with sup.locked(folder):
        state = running_state(settings)
        if state is not None:
            return state, False
        _clear_stale(read_state(settings), settings, folder)
        began = time.monotonic()
        pid = _launch(settings, folder)
        pid_start = sup.process_start(pid)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            state = read_state(settings)
            if state is not None and state.pid == pid:
                took = time.monotonic() - began
                log.info("memsys server started for %s: Weaviate at %s, pid %d, in %.1f s", settings.data_dir,
                         state.url, pid, took, extra=event("server.started", pid=pid, url=state.url,
                                                           seconds=round(took, 2)))
                return state, True
            if pid_start is None or not sup.is_alive(pid, pid_start):
                raise ServerError(f"Weaviate for {settings.data_dir} did not start; see {log_file(settings)}")
            time.sleep(0.1)
        os.kill(pid, signal.SIGTERM)
        raise ServerError(f"Weaviate for {settings.data_dir} did not start within {_START_TIMEOUT:.0f} s; "
                          f"see {log_file(settings)}")


def connect_client(settings: Settings, *, start: bool = True) -> tuple[Any, ServerState]:
    """A weaviate client on this data directory's server (started when `start` and none
    runs), checked to be that server: it must accept this directory's key and name this
    directory's node. Holds a lease until `release_client`."""
    leases.acquire(settings)
    try:
        if start:
            state, _ = ensure_server(settings)
        else:
            found = running_state(settings)
            if found is None:
                raise ServerError(f"no memsys server runs for {settings.data_dir}")
            state = found
        try:
            client = weaviate.connect_to_local(
                host=state.host, port=state.port, grpc_port=state.grpc_port,
                auth_credentials=Auth.api_key(api_key(settings)), additional_config=client_timeouts(settings),
            )
        except weaviate_errors() as e:
            raise ServerError(f"cannot use the memsys server for {settings.data_dir} on port {state.port}: "
                              f"{scrub(str(e), [api_key(settings)])}") from None
        try:
            nodes = [n.name for n in client.cluster.nodes()]
        except weaviate_errors() as e:
            client.close()
            raise ServerError(f"the server on port {state.port} did not answer as expected: {type(e).__name__}") from None
        if nodes != [state.node]:
            client.close()
            raise ServerError(f"the server on port {state.port} is not the one of {settings.data_dir} "
                              f"(it serves node {', '.join(nodes)}, expected {state.node})")
        return client, state
    except BaseException:
        leases.release(settings)
        raise


def release_client(settings: Settings) -> None:
    leases.release(settings)


# --- stop and status -----------------------------------------------------------------
def stop_server(settings: Settings, timeout: float = _STOP_TIMEOUT) -> ServerState | None:
    """Stop this data directory's server: SIGTERM to its supervisor, which stops Weaviate
    with SIGTERM (it flushes) and removes the state file. Returns what was stopped."""
    folder = _prepare_dir(settings)
    state = read_state(settings)
    if state is None:
        return None
    if not state.supervisor_alive or not _is_ours(state, settings):
        with sup.locked(folder):
            _clear_stale(read_state(settings), settings, folder)
        return None
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while sup.is_alive(state.pid, state.pid_start):
        if time.monotonic() > deadline:
            raise ServerError(f"the memsys server (pid {state.pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    ran = time.time() - state.started_at
    log.info("memsys server for %s stopped (pid %d, ran %.0f s)", settings.data_dir, state.pid, ran,
             extra=event("server.stopped", pid=state.pid, ran_seconds=round(ran, 1)))
    return state


def _process_command(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline()[:6])
    except psutil.Error:
        return "?"


def server_status(settings: Settings, count_objects: bool = True) -> ServerStatus:
    """Is it running, where, since when, memory, objects per collection, clients. Never
    starts a server; connects briefly to count objects (unless `count_objects` is off)."""
    if settings.weaviate_url:
        return ServerStatus(settings.data_dir, running=False, external=settings.weaviate_url)
    folder = server_dir(settings)
    status = ServerStatus(settings.data_dir.resolve(), running=False, log_file=log_file(settings),
                          last_stop=sup.read_json(folder / sup.STOPPED_FILE))
    state = running_state(settings)
    if state is None:
        return status
    status.running = True
    status.state = state
    status.clients = [ClientInfo(pid, _process_command(pid)) for pid in sorted(sup.live_leases(folder))]
    status.last_check = last_check(settings, state)
    try:
        weaviate_process = psutil.Process(state.weaviate_pid)
        status.memory_bytes = weaviate_process.memory_info().rss
        status.connections = sum(
            1 for c in weaviate_process.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port in (state.port, state.grpc_port)
        )
    except psutil.Error:
        pass
    if count_objects:
        status.objects = _count_objects(settings)
    return status


def last_check(settings: Settings, state: ServerState) -> dict[str, Any] | None:
    """The running supervisor's last look at its clients and Weaviate (every half second):
    {"checked_at": epoch seconds, "checks": n, "clients": n, "idle_since": epoch or None}."""
    data = sup.read_json(server_dir(settings) / sup.CHECK_FILE)
    return data if data and data.get("pid") == state.pid else None


def _count_objects(settings: Settings) -> dict[str, int] | None:
    try:
        client, _ = connect_client(settings, start=False)
    except StoreUnavailableError:
        return None
    try:
        return {
            name: int(client.collections.get(name).aggregate.over_all(total_count=True).total_count or 0)
            for name in sorted(client.collections.list_all(simple=True))
        }
    except weaviate_errors(OSError):
        return None
    finally:
        client.close()
        release_client(settings)
