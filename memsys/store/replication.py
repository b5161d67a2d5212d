"""Whether memories are really on every replica: each memory a job wrote must be
readable with consistency ALL and held by as many nodes as the replication factor asks.
Replicas are counted node by node (`GET /v1/objects/...?node_name=`), which reads one
node's copy without repairing it.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import httpx

from memsys.errors import StoreUnavailableError, scrub, weaviate_errors
from memsys.store.cluster import cluster_status
from memsys.store.collection import MemoryStore

_CHECK_WORKERS = 8
# How long a verification keeps asking for the node list while the cluster refuses it
# (the member list drops a dead node within a few seconds).
_VERIFY_LISTING_SECONDS = 20.0


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



def replica_holders(store: MemoryStore, uuids: Sequence[str], nodes: Iterable[str]) -> dict[str, set[str]]:
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


def verify_replication(store: MemoryStore, job_id: str, items: Sequence[tuple[str, str]]) -> ReplicationReport:
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
        except weaviate_errors() as e:
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
