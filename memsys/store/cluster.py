"""The Weaviate cluster's health as memsys sees it: its nodes and their status, the
collection's replication and sharding settings, and which nodes are down. Checked on
Weaviate 1.35: a node gone from the cluster's member list is dropped from the nodes API
and from the replica set a consistency level counts (an ALL read then succeeds on the
surviving copies), so the Raft member list names the nodes that should be there.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
import weakref
from dataclasses import dataclass, field

import httpx

from memsys.errors import weaviate_errors
from memsys.store.collection import MemoryStore

DOWN = "DOWN"  # a Raft member the nodes API no longer lists
_DOWN_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class NodeState:
    """One node: its status as the cluster reports it, and what it holds of the collection."""

    name: str
    status: str  # HEALTHY, UNHEALTHY, INDEXING, ... or DOWN
    version: str = ""
    shards: int | None = None  # the collection's shards on this node; None when not known
    objects: int | None = None  # flushed objects only: it lags the latest writes
    leader: bool = False

    @property
    def is_up(self) -> bool:
        return self.status == "HEALTHY"


@dataclass(frozen=True)
class ClusterStatus:
    """What Home shows about the store: nodes, shards, replication and consistency."""

    mode: str
    collection: str
    nodes: tuple[NodeState, ...]
    replication_factor: int | None  # None: the collection does not exist yet
    shard_count: int | None
    async_replication: bool | None
    write_consistency: str
    read_consistency: str
    detail: str = ""  # why some figures are missing, in a sentence
    talks_to: str = ""  # the REST URL of the node memsys talks to
    configured_nodes: int = 1  # how many nodes it may move between (WEAVIATE_URLS)

    @property
    def down(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if not n.is_up)



def cluster_status(store: MemoryStore, wait_for_listing: float = 0.0) -> ClusterStatus:
    """The nodes (with the ones Raft knows but the nodes API dropped marked DOWN) and the
    collection's replication, from Weaviate's nodes, cluster and schema APIs.

    For a few seconds after a node dies every cluster-wide call is refused (until the
    member list drops it). `wait_for_listing` is how long to keep asking for the full node
    list before falling back to what is known without it (a page answers at once; a
    verification, which must name every node, waits)."""
    client = store.client
    s = store.settings
    detail = ""
    nodes: dict[str, NodeState] = {}
    try:
        # Verbose output has the shards, but answers 500 while a node is unreachable.
        # The nodes API knows physical collections, not the alias memsys addresses.
        listed = client.cluster.nodes(store.live_collection(), output="verbose")
    except weaviate_errors():
        detail = "shard details are not available while a node is unreachable"
        try:
            listed = _minimal_nodes(store, wait_for_listing)
        except weaviate_errors() as e:
            # The error names the unreachable node; the others seen before are asked one
            # by one (a fresh process has seen none: then only Raft's members are known).
            listed = []
            detail = "the cluster's node list is refused while a node is unreachable"
            unreachable = set(_UNREACHABLE.findall(str(e)))
            nodes.update((n, NodeState(n, DOWN)) for n in unreachable)
            known = [n for n in _known_members.get(store, ()) if n not in unreachable]
            nodes.update((n, NodeState(n, "HEALTHY" if _answers(store, n) else DOWN)) for n in known)
    # Raft's view after the node list: asked while a dead node is still a member, it is
    # refused too, and a verification that waited for the list would miss the dead node.
    raft = _raft_view(store)
    for n in listed:
        nodes[n.name] = NodeState(
            n.name, n.status, n.version,
            shards=len(n.shards) if n.shards is not None else None,
            objects=sum(sh.object_count for sh in n.shards) if n.shards is not None else None,
        )
    for name in raft.members:
        nodes.setdefault(name, NodeState(name, DOWN))
    _known_members[store] = tuple(sorted(set(_known_members.get(store, ())) | set(nodes)))
    factor = shards = None
    asynchronous = None
    if client.collections.exists(store.collection_name):
        config = client.collections.get(store.collection_name).config.get()
        factor = config.replication_config.factor
        asynchronous = config.replication_config.async_enabled
        shards = config.sharding_config.actual_count if config.sharding_config else None
    ordered = sorted(nodes.values(), key=lambda n: n.name)
    return ClusterStatus(
        mode=s.weaviate_mode, collection=store.collection_name,
        nodes=tuple(dataclasses.replace(n, leader=n.name == raft.leader) for n in ordered),
        replication_factor=factor, shard_count=shards, async_replication=asynchronous,
        write_consistency=s.write_consistency, read_consistency=s.read_consistency, detail=detail,
        talks_to=store.rest_url, configured_nodes=max(1, len(s.weaviate_nodes)),
    )


def _minimal_nodes(store: MemoryStore, wait: float) -> list:
    """The minimal node list, asked again every half second for up to `wait` seconds while
    the cluster refuses it; raises the last refusal."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return store.client.cluster.nodes(output="minimal")
        except weaviate_errors():
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


_known_members: "weakref.WeakKeyDictionary[MemoryStore, tuple[str, ...]]" = weakref.WeakKeyDictionary()
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _answers(store: MemoryStore, node: str) -> bool:
    """Whether one node answers for its own copy of an object: 404 (no such object) or 200
    from it means it is up; the coordinator says 500 when it cannot reach it."""
    url = f"{store.rest_url}/v1/objects/{store.collection_name}/{_NIL_UUID}"
    try:
        r = httpx.get(url, params={"node_name": node}, headers=store.rest_headers(), timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code in (200, 404)


# "node: node03: send http request: ... connection refused" in a refused nodes request.
_UNREACHABLE = re.compile(r"node: ([\w.-]+): ")


@dataclass(frozen=True)
class _RaftView:
    members: tuple[str, ...] = ()  # every node that should be in the cluster
    statuses: dict[str, str] = field(default_factory=dict)  # nodes that answered, with their status
    leader: str | None = None


def _raft_view(store: MemoryStore) -> _RaftView:
    """The cluster's Raft members, the nodes answering for statistics, and the leader."""
    try:
        stats = store.client.cluster.statistics()
    except weaviate_errors():
        return _RaftView()  # one node without Raft statistics, or no rights: the nodes API alone
    members: set[str] = set()
    statuses = {}
    leader = None
    for node in stats.statistics:
        statuses[node.name] = node.status
        leader = leader or node.leader_id or None
        members.add(node.name)
        members.update(m.node_id for m in (node.raft.latest_configuration or []))
    return _RaftView(tuple(sorted(members)), statuses, leader)


_down_lock = threading.Lock()
_down_seen: "weakref.WeakKeyDictionary[MemoryStore, tuple[float, list[str]]]" = weakref.WeakKeyDictionary()


def down_nodes(store: MemoryStore) -> list[str]:
    """Nodes that should be in the cluster but are not healthy (asked at most every two
    seconds per store: a failing batch asks once per failed write)."""
    now = time.monotonic()
    with _down_lock:
        cached = _down_seen.get(store)
        if cached and now - cached[0] < _DOWN_CACHE_SECONDS:
            return cached[1]
    try:
        down = list(cluster_status(store).down)
    except weaviate_errors():
        down = []  # the reason then says only that a replica did not answer
    with _down_lock:
        _down_seen[store] = (now, down)
    return down

