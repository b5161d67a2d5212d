"""The store's nodes on screen: each Weaviate node with its status and shards, the
collection's replication and consistency settings, and a job's replica check."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from memsys.engine import ClusterStatus, ReplicationReport

SHOWN = 500


def cluster_panel(status: ClusterStatus) -> None:
    """Nodes, their status and shards; a node that is down is named in a warning too."""
    st.markdown("**Weaviate nodes**")
    rows = [{
        "Node": n.name + (" (Raft leader)" if n.leader else ""),
        "Status": "up" if n.is_up else f"DOWN ({n.status.lower()})" if n.status != "DOWN" else "DOWN",
        "Shards": n.shards,
    } for n in status.nodes]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    factor = status.replication_factor if status.replication_factor is not None else "— (collection not created yet)"
    asynchronous = {True: "on", False: "off", None: "—"}[status.async_replication]
    st.caption(f"Replication factor {factor}, {status.shard_count or '—'} shards, async replication {asynchronous}; "
               f"writes {status.write_consistency}, reads {status.read_consistency}. {status.detail}".strip())
    if status.talks_to and len(status.nodes) > 1:
        moves = (f"it moves to another of the {status.configured_nodes} nodes in WEAVIATE_URLS if this one stops "
                 "answering" if status.configured_nodes > 1 else
                 "list every node in WEAVIATE_URLS for memsys to move to another if this one goes down")
        st.caption(f"memsys talks to {status.talks_to}; {moves}.")
    if status.down:
        st.warning(f"{', '.join(status.down)} {'is' if len(status.down) == 1 else 'are'} down. Imports go on while "
                   "the write consistency level can be met; verify a job once the node is back.",
                   icon=":material/warning:")


def replication_report(report: ReplicationReport) -> None:
    if report.ok:
        st.success(f"Verified: {report.summary}.", icon=":material/verified:")
        return
    st.warning(f"{report.summary[:1].upper()}{report.summary[1:]}. Async replication copies them once the nodes "
               "are back; verify again later.", icon=":material/sync_problem:")
    rows = [{"Item": m.item, "Memory": m.uuid, "Copies": m.copies, "Why": m.reason} for m in report.not_replicated[:SHOWN]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
