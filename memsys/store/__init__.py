"""Everything that talks to Weaviate; each module imports only modules listed above it:

    supervisor   the process that owns one data directory's embedded Weaviate (a script)
    server_log   that Weaviate's log, read for what an operator has to know
    client       opening one client: timeouts, a node's address, a server URL or Cloud
    records      what the store hands back and takes (values only)
    wire         a batch write as Weaviate's gRPC request, built directly
    server       the memsys server: one embedded Weaviate per data directory
    connection   the client a store shares, following the server or the cluster's nodes
    collection   the memories collection (`MemoryStore`)
    cluster      the cluster's health: nodes, replication settings, nodes that are down
    replication  whether a job's memories are on every replica

The names below load on first use (memsys.lazy): importing one module of the package,
such as `memsys.store.server`, does not import the others.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from memsys.lazy import lazy_exports

if TYPE_CHECKING:
    from memsys.store.collection import SEARCH_MODES, SETTLE_PROPERTIES, IndexQueue, MemoryStore, is_replica_error
    from memsys.store.records import (BrowsePage, MemoryFilter, Settled, StoredDocument, StoredMemory, WriteOutcome,
                                      export_record, parse_export_line, settle, stored_to_memory)
    from memsys.store.server import embedded_environment

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "memsys.store.collection": ("SEARCH_MODES", "SETTLE_PROPERTIES", "IndexQueue", "MemoryStore", "is_replica_error"),
    "memsys.store.records": (
        "BrowsePage", "MemoryFilter", "Settled", "StoredDocument", "StoredMemory", "WriteOutcome",
        "export_record", "parse_export_line", "settle", "stored_to_memory",
    ),
    "memsys.store.server": ("embedded_environment",),
})
