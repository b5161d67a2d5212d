"""The Weaviate cluster as memsys sees it: its nodes and their health, the collection's
replication and sharding, which nodes are down, and whether memories are really on every
replica. Checked on Weaviate 1.35: a node gone from the cluster's member list is dropped
from the nodes API and from the replica set a consistency level counts (an ALL read then
succeeds on the surviving copies), so the Raft member list names the nodes that should be
there, and replicas are counted node by node (`GET /v1/objects/...?node_name=`), which
reads one node's copy without repairing it.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import httpx
from weaviate.exceptions import WeaviateBaseError

from memsys.errors import StoreUnavailableError, scrub

if TYPE_CHECKING:
    from memsys.store import MemoryStore

DOWN = "DOWN"  # a Raft member the nodes API no longer lists
_DOWN_CACHE_SECONDS = 2.0
_CHECK_WORKERS = 8
# How long a verification keeps asking for the node list while the cluster refuses it
# (the member list drops a dead node within a few seconds).
_VERIFY_LISTING_SECONDS = 20.0


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


@dataclass(frozen=True)
class UnreplicatedMemory:
    uuid: str
    item: str
    copies: int  # how many nodes hold it
    reason: str


@dataclass(frozen=True)
class ReplicationReport:
    """Whether every memory a job wrote is readable at consistency ALL and held by as many
    nodes as the replication factor asks."""

    job_id: str
    checked: int
    replication_factor: int
    nodes: tuple[str, ...]
    down: tuple[str, ...]
    not_replicated: tuple[UnreplicatedMemory, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.not_replicated

    @property
    def summary(self) -> str:
        if self.ok:
            copies = f" on {self.replication_factor} replicas" if self.replication_factor > 1 else ""
            return f"all {self.checked:,} memories are readable with consistency ALL{copies}"
        down = f"; {', '.join(self.down)} {'is' if len(self.down) == 1 else 'are'} down" if self.down else ""
        return f"{len(self.not_replicated):,} of {self.checked:,} memories are not yet fully replicated{down}"


def cluster_status(store: "MemoryStore", wait_for_listing: float = 0.0) -> ClusterStatus:
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
    except WeaviateBaseError:
        detail = "shard details are not available while a node is unreachable"
        try:
            listed = _minimal_nodes(store, wait_for_listing)
        except WeaviateBaseError as e:
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


def _minimal_nodes(store: "MemoryStore", wait: float) -> list:
    """The minimal node list, asked again every half second for up to `wait` seconds while
    the cluster refuses it; raises the last refusal."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return store.client.cluster.nodes(output="minimal")
        except WeaviateBaseError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


_known_members: "weakref.WeakKeyDictionary[MemoryStore, tuple[str, ...]]" = weakref.WeakKeyDictionary()
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _answers(store: "MemoryStore", node: str) -> bool:
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


def _raft_view(store: "MemoryStore") -> _RaftView:
    """The cluster's Raft members, the nodes answering for statistics, and the leader."""
    try:
        stats = store.client.cluster.statistics()
    except WeaviateBaseError:
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


def down_nodes(store: "MemoryStore") -> list[str]:
    """Nodes that should be in the cluster but are not healthy (asked at most every two
    seconds per store: a failing batch asks once per failed write)."""
    now = time.monotonic()
    with _down_lock:
        cached = _down_seen.get(store)
        if cached and now - cached[0] < _DOWN_CACHE_SECONDS:
            return cached[1]
    try:
        down = list(cluster_status(store).down)
    except WeaviateBaseError:
        down = []  # the reason then says only that a replica did not answer
    with _down_lock:
        _down_seen[store] = (now, down)
    return down


def replica_holders(store: "MemoryStore", uuids: Sequence[str], nodes: Iterable[str]) -> dict[str, set[str]]:
    """For each uuid, the nodes whose own copy of it exists (one node's copy is read
    without read repair). A node that cannot be asked holds nothing, as far as we know."""
    nodes = list(nodes)
    holders: dict[str, set[str]] = {u: set() for u in uuids}
    if not uuids or not nodes:
        return holders
    base = f"{store.rest_url}/v1/objects/{store.collection_name}"
    secrets = [store.settings.weaviate_api_key.get()]
    with httpx.Client(headers=store.rest_headers(), timeout=store.settings.weaviate_timeout) as http:

        def check(pair: tuple[str, str]) -> tuple[str, str, bool]:
            uuid, node = pair
            try:
                r = http.get(f"{base}/{uuid}", params={"node_name": node})
            except httpx.HTTPError as e:
                raise StoreUnavailableError(f"cannot ask {node} for its copies: {scrub(str(e), secrets)}") from None
            return uuid, node, r.status_code == 200

        with ThreadPoolExecutor(_CHECK_WORKERS, thread_name_prefix="memsys-replicas") as pool:
            for uuid, node, present in pool.map(check, [(u, n) for u in uuids for n in nodes]):
                if present:
                    holders[uuid].add(node)
    return holders


def verify_replication(store: "MemoryStore", job_id: str, items: Sequence[tuple[str, str]]) -> ReplicationReport:
    """Check that every (uuid, item name) is readable with consistency ALL and, on a
    cluster, held by as many nodes as the replication factor asks."""
    deadline = time.monotonic() + _VERIFY_LISTING_SECONDS
    status = cluster_status(store, wait_for_listing=_VERIFY_LISTING_SECONDS)
    while (status.replication_factor or 1) > len(status.nodes) and time.monotonic() < deadline:
        time.sleep(0.5)  # a dead node not yet known by name: Raft's view comes back with the list
        status = cluster_status(store, wait_for_listing=max(0.0, deadline - time.monotonic()))
    factor = status.replication_factor or 1
    names = tuple(n.name for n in status.nodes)
    if factor > len(names):
        # Fewer nodes known than copies asked for: which nodes hold what cannot be told,
        # and a report of "all replicated" would be a guess.
        why = f"not verified: only {len(names)} of the {factor} replica nodes could be listed ({status.detail or 'the others are not in the member list'})"
        return ReplicationReport(job_id, len(items), factor, names, status.down,
                                 tuple(UnreplicatedMemory(u, item, 0, why) for u, item in items))
    uuids = [u for u, _ in items]
    problems: dict[str, UnreplicatedMemory] = {}
    readable: set[str] = set()
    secrets = [store.settings.weaviate_api_key.get()]
    for start in range(0, len(uuids), 1000):
        chunk = uuids[start:start + 1000]
        try:
            readable.update(store.existing(chunk, level="ALL"))
        except WeaviateBaseError as e:
            why = f"not readable with consistency ALL: {scrub(str(e), secrets)}"
            problems.update((u, UnreplicatedMemory(u, "", 0, why)) for u in chunk)
    up = [n.name for n in status.nodes if n.is_up]
    holders = replica_holders(store, uuids, up) if len(names) > 1 else {u: set(names) for u in uuids}
    names_by_uuid = dict(items)
    result = []
    for uuid in uuids:
        have = holders.get(uuid, set())
        item = names_by_uuid[uuid]
        if uuid in problems:
            result.append(UnreplicatedMemory(uuid, item, len(have), problems[uuid].reason))
        elif uuid not in readable:
            result.append(UnreplicatedMemory(uuid, item, len(have), "not found with consistency ALL"))
        elif len(names) > 1 and len(have) < factor:
            # With a copy on every node, the nodes without one are known by name.
            missing = f"; not on {', '.join(sorted(set(names) - have))}" if factor == len(names) else ""
            result.append(UnreplicatedMemory(uuid, item, len(have), f"on {len(have)} of {factor} replicas{missing}"))
    return ReplicationReport(job_id, len(uuids), factor, names, status.down, tuple(result))
