"""A local Weaviate cluster for anyone: N nodes on 127.0.0.1 from the server binary that
`make setup` builds, each with its own data directory and REST, gRPC, gossip, data and Raft
ports, joined with Raft. The state file (`<base-dir>/cluster.json`, owner-only) records
ports, process ids and the generated keys, so `stop` ends exactly the processes `start`
began (SIGTERM, then a wait; by PID, after checking the PID is still that node).

Usage:
  python tools/weaviate_cluster.py start 3 [--base-dir DIR] [--base-port PORT]
  python tools/weaviate_cluster.py status [--base-dir DIR]
  python tools/weaviate_cluster.py stop [--base-dir DIR]

The public gRPC port and the cluster data port always bind every interface (Weaviate
1.35), so the cluster is locked with an API key (`<base-dir>/api-key`, also used for gRPC)
and the data port with a generated basic-auth password; nothing answers without them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsys.config import Settings  # noqa: E402
from memsys.store.server import embedded_environment  # noqa: E402
from tools.install_weaviate import embedded_binary_path  # noqa: E402

DEFAULT_BASE_DIR = Path(".memsys-cluster")
DEFAULT_BASE_PORT = 24100
FREE_RANGE = (24000, 25000)  # where plan_free_ports looks (below Linux's ephemeral 32768-60999)
PORTS_PER_NODE = 10  # rest, grpc, gossip, data, raft, raft rpc (= raft + 1) and spare
MAX_NODES = 99  # node names are matched by substring in RAFT_JOIN: node01 .. node99
STATE_FILE = "cluster.json"
API_KEY_FILE = "api-key"
API_USER = "memsys"


class ClusterError(RuntimeError):
    """The cluster cannot do what was asked; the message says which node and why."""


@dataclass
class NodeSpec:
    """One node: its name, its ports and, while it runs, its process id."""

    name: str
    rest: int
    grpc: int
    gossip: int
    data: int
    raft: int
    pid: int | None = None

    @property
    def raft_rpc(self) -> int:
        # In localhost mode Weaviate takes the internal Raft RPC port as Raft port + 1.
        return self.raft + 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest}"


@dataclass
class LocalCluster:
    """N nodes under one base directory; saved to and loaded from its state file."""

    base_dir: Path
    nodes: list[NodeSpec]
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    data_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    binary: str = ""
    # More settings for every node, e.g. a backup module's (ENABLE_MODULES=backup-s3,
    # BACKUP_S3_*, AWS_*); never written to the state file.
    extra_env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The processes this object started, kept so they are reaped (not left as zombies).
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False, compare=False)

    # --- planning and the state file ------------------------------------------------
    @classmethod
    def plan(cls, base_dir: Path, n: int, base_port: int = DEFAULT_BASE_PORT) -> "LocalCluster":
        """N nodes on contiguous ports: node i uses base_port + 10*i ... + 5."""
        _check_size(n)
        nodes = []
        for i in range(n):
            p = base_port + PORTS_PER_NODE * i
            nodes.append(NodeSpec(_name(i), rest=p, grpc=p + 1, gossip=p + 2, data=p + 3, raft=p + 4))
        return cls(Path(base_dir).resolve(), nodes)

    @classmethod
    def plan_free_ports(cls, base_dir: Path, n: int, low: int = FREE_RANGE[0], high: int = FREE_RANGE[1]) -> "LocalCluster":
        """N nodes on blocks of ports in [low, high) that are free now (tests running side by
        side). The range lies below the OS's ephemeral ports on purpose: a port from there
        can be taken by any outgoing connection while its node is down, and the node then
        cannot start again on it."""
        _check_size(n)
        blocks = list(range(low, high - PORTS_PER_NODE + 1, PORTS_PER_NODE))
        random.shuffle(blocks)
        chosen = [start for start in blocks if all(_port_free(p) for p in range(start, start + 6))][:n]
        if len(chosen) < n:
            raise ClusterError(f"fewer than {n} blocks of free ports between {low} and {high}")
        nodes = [NodeSpec(_name(i), rest=p, grpc=p + 1, gossip=p + 2, data=p + 3, raft=p + 4) for i, p in enumerate(chosen)]
        return cls(Path(base_dir).resolve(), nodes)

    @classmethod
    def load(cls, base_dir: Path) -> "LocalCluster":
        path = Path(base_dir).resolve() / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {path.parent} (no {STATE_FILE}); start one first") from None
        return cls(Path(raw["base_dir"]), [NodeSpec(**n) for n in raw["nodes"]], raw["api_key"], raw["data_password"],
                   raw.get("binary", ""))

    def save(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700)
        data = {"base_dir": str(self.base_dir), "nodes": [asdict(n) for n in self.nodes], "api_key": self.api_key,
                "data_password": self.data_password, "binary": self.binary}
        _write_private(self.base_dir / STATE_FILE, json.dumps(data, indent=2))
        _write_private(self.base_dir / API_KEY_FILE, self.api_key + "\n")

    # --- what memsys needs --------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> str:
        """Every node, each with its gRPC port: WEAVIATE_URLS."""
        return ",".join(f"{n.url}?grpc={n.grpc}" for n in self.nodes)

    def memsys_env(self, every_node: bool = False) -> dict[str, str]:
        """The settings that point memsys at this cluster: the first node's REST and gRPC,
        or with `every_node` all of them (memsys moves to the next when one goes down)."""
        if every_node:
            return {"WEAVIATE_URLS": self.urls, "WEAVIATE_API_KEY": self.api_key}
        return {"WEAVIATE_URL": self.url, "MEMSYS_WEAVIATE_GRPC_PORT": str(self.nodes[0].grpc),
                "WEAVIATE_API_KEY": self.api_key}

    # --- processes ------------------------------------------------------------------------
    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r}; this cluster has {', '.join(n.name for n in self.nodes)}")

    def environment(self, node: NodeSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "RAFT_", "AUTHENTICATION_"))}
        env.update(embedded_environment())
        env.update(
            CLUSTER_HOSTNAME=node.name,
            PERSISTENCE_DATA_PATH=str(self.base_dir / node.name),
            GRPC_PORT=str(node.grpc),
            CLUSTER_IN_LOCALHOST="true",
            CLUSTER_BIND_ADDR="127.0.0.1",
            CLUSTER_ADVERTISE_ADDR="127.0.0.1",
            CLUSTER_GOSSIP_BIND_PORT=str(node.gossip),
            CLUSTER_DATA_BIND_PORT=str(node.data),
            CLUSTER_JOIN=",".join(f"127.0.0.1:{n.gossip}" for n in self.nodes),
            CLUSTER_BASIC_AUTH_USERNAME="memsys-cluster",
            CLUSTER_BASIC_AUTH_PASSWORD=self.data_password,
            RAFT_PORT=str(node.raft),
            RAFT_INTERNAL_RPC_PORT=str(node.raft_rpc),
            RAFT_JOIN=",".join(f"{n.name}:{n.raft}" for n in self.nodes),
            RAFT_BOOTSTRAP_EXPECT=str(len(self.nodes)),
            AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED="false",
            AUTHENTICATION_APIKEY_ENABLED="true",
            AUTHENTICATION_APIKEY_ALLOWED_KEYS=self.api_key,
            AUTHENTICATION_APIKEY_USERS=API_USER,
            GO_PROFILING_DISABLE="true",
            DEFAULT_VECTORIZER_MODULE="none",
            LOG_LEVEL="warning",
        )
        env.update(self.extra_env)
        return env

    def start(self, names: list[str] | None = None) -> None:
        """Start the named nodes (default: every node not running) and record their pids."""
        binary = Path(self.binary) if self.binary else embedded_binary_path(Settings.load().weaviate_binary_dir)
        if not binary.is_file():
            raise ClusterError(f"the Weaviate server binary is not at {binary}; run `make setup` first")
        self.binary = str(binary)
        self.save()
        for node in self.nodes:
            if (names is not None and node.name not in names) or self.running(node):
                continue
            data = self.base_dir / node.name
            data.mkdir(parents=True, exist_ok=True)
            log = (self.base_dir / f"{node.name}.log").open("ab")
            proc = subprocess.Popen(
                [str(binary), "--scheme", "http", "--host", "127.0.0.1", "--port", str(node.rest)],
                env=self.environment(node), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the starting shell does not reach the nodes
            )
            log.close()
            self._children[node.name] = proc
            node.pid = proc.pid
            self.save()

    def running(self, node: NodeSpec) -> bool:
        """True when the recorded pid is alive and is still this node's server."""
        return self._process(node) is not None

    def _process(self, node: NodeSpec) -> psutil.Process | None:
        if node.pid is None:
            return None
        child = self._children.get(node.name)
        if child is not None and child.pid == node.pid:
            # Our own child: its pid cannot be reused before we reap it, and right after
            # Popen it may not have exec'd the server yet (its command line is still ours).
            if child.poll() is not None:
                return None
            try:
                return psutil.Process(child.pid)
            except psutil.NoSuchProcess:
                return None
        try:
            proc = psutil.Process(node.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                proc.wait(0)
                return None
            cmd = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
            return None
        # A recycled pid belongs to some other program: never signal it.
        if not cmd or "--port" not in cmd or str(node.rest) not in cmd or Path(cmd[0]).name != Path(self.binary).name:
            return None
        return proc

    def signal_node(self, name: str, sig: signal.Signals) -> None:
        node = self.node(name)
        proc = self._process(node)
        if proc is None:
            raise ClusterError(f"{name} is not running")
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(30)
            self._reap(node)
            node.pid = None
            self.save()

    def _reap(self, node: NodeSpec) -> None:
        child = self._children.pop(node.name, None)
        if child is not None:
            child.wait(10)  # already exited: this only settles Popen's own bookkeeping

    def stop(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        """SIGTERM each node, wait for it to exit; SIGKILL only what outlives the timeout."""
        chosen = [n for n in self.nodes if names is None or n.name in names]
        procs = [(n, self._process(n)) for n in chosen]
        for _, proc in procs:
            if proc is not None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for node, proc in procs:
            if proc is not None:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            self._reap(node)
            node.pid = None
        self.save()

    # --- readiness ------------------------------------------------------------------------
    def ready(self, node: NodeSpec) -> bool:
        try:
            with urllib.request.urlopen(f"{node.url}/v1/.well-known/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def members(self, via: NodeSpec | None = None) -> dict[str, str]:
        """Node name -> status as one node sees the cluster (minimal nodes output)."""
        node = via or next((n for n in self.nodes if self.ready(n)), self.nodes[0])
        request = urllib.request.Request(f"{node.url}/v1/nodes?output=minimal",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return {n["name"]: n["status"] for n in json.load(r).get("nodes", [])}

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.base_dir / f"{name}.log"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def leader(self) -> str | None:
        """The Raft leader's node name, as the first answering node reports it."""
        node = next((n for n in self.nodes if self.ready(n)), self.nodes[0])
        request = urllib.request.Request(f"{node.url}/v1/cluster/statistics",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            stats = json.load(r).get("statistics", [])
        return next((s["leaderId"] for s in stats if s.get("leaderId")), None)

    def wait_ready(self, timeout: float = 120.0, names: list[str] | None = None) -> None:
        """Wait until the named nodes (default all) answer and every node sees them healthy."""
        wanted = [n for n in self.nodes if names is None or n.name in names]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            dead = [n.name for n in wanted if not self.running(n)]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited while starting; {dead[0]}'s log ends: {self.log_tail(dead[0])}")
            if all(self.ready(n) for n in wanted):
                try:
                    seen = self.members(wanted[0])
                except (OSError, ValueError) as e:
                    last = str(e)
                else:
                    if all(seen.get(n.name) == "HEALTHY" for n in wanted):
                        return
                    last = f"members: {seen}"
            time.sleep(0.3)
        raise ClusterError(f"the cluster was not ready within {timeout:.0f}s ({last or 'nodes not answering'})")


def _name(i: int) -> str:
    return f"node{i + 1:02d}"


def _check_size(n: int) -> None:
    if not 1 <= n <= MAX_NODES:
        raise ClusterError(f"a local cluster has 1 to {MAX_NODES} nodes, not {n}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


# --- the command line ---------------------------------------------------------------------
def _print_settings(cluster: LocalCluster) -> None:
    env = cluster.memsys_env()
    print(f"WEAVIATE_URLS={cluster.urls}")
    # The key itself is not printed (it would land in terminal logs); it is read from its file.
    print(f"WEAVIATE_API_KEY=$(cat {cluster.base_dir / API_KEY_FILE})")
    print("# or through the first node only (no moving to another when it goes down):")
    print(f"# WEAVIATE_URL={env['WEAVIATE_URL']} MEMSYS_WEAVIATE_GRPC_PORT={env['MEMSYS_WEAVIATE_GRPC_PORT']}")


def _start(args: argparse.Namespace) -> int:
    state = args.base_dir / STATE_FILE
    if state.exists():
        cluster = LocalCluster.load(args.base_dir)
        if len(cluster.nodes) != args.nodes:
            raise ClusterError(f"{args.base_dir} holds a {len(cluster.nodes)}-node cluster; "
                               f"stop it and use another --base-dir for {args.nodes} nodes")
    else:
        cluster = LocalCluster.plan(args.base_dir, args.nodes, args.base_port)
    cluster.start()
    cluster.wait_ready(args.timeout)
    print(f"{len(cluster.nodes)} nodes ready in {cluster.base_dir}. Point memsys at the cluster with:")
    _print_settings(cluster)
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = LocalCluster.load(args.base_dir)
    try:
        members = cluster.members()
    except (OSError, ValueError):
        members = {}
    for n in cluster.nodes:
        process = f"pid {n.pid}" if cluster.running(n) else "not running"
        print(f"{n.name}  {process:<14} {members.get(n.name, 'UNREACHABLE'):<12} rest {n.rest} grpc {n.grpc} "
              f"gossip {n.gossip} data {n.data} raft {n.raft}")
    _print_settings(cluster)
    return 0 if all(cluster.running(n) for n in cluster.nodes) else 1


def _stop(args: argparse.Namespace) -> int:
    cluster = LocalCluster.load(args.base_dir)
    cluster.stop(timeout=args.timeout)
    print(f"stopped {len(cluster.nodes)} nodes; their data stays in {cluster.base_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/weaviate_cluster.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("start", _start), ("status", _status), ("stop", _stop)):
        p = sub.add_parser(name)
        if name == "start":
            p.add_argument("nodes", type=int, help="how many nodes (1-99)")
            p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                           help=f"node i uses this + {PORTS_PER_NODE}*i ... + 5 (default {DEFAULT_BASE_PORT})")
        else:
            p.add_argument("nodes", type=int, nargs="?", help="ignored: the state file knows the nodes")
        p.add_argument("--base-dir", type=Path, default=DEFAULT_BASE_DIR, help=f"default {DEFAULT_BASE_DIR}")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for start or stop")
        p.set_defaults(func=fn)
    args = parser.parse_args(argv)
    # The nodes are meant to outlive this command; Python would warn about each one.
    warnings.filterwarnings("ignore", category=ResourceWarning)
    try:
        return int(args.func(args))
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
