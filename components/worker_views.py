"""The workers on screen (when jobs go to `memsys worker` processes): each worker with its
host, pid, the batches it holds and its last heartbeat; and which worker did each batch of
an import."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from components import format as fmt
from memsys.engine import WorkersView


def workers_panel(view: WorkersView) -> None:
    """Nothing when imports run in the dashboard's own process and no worker ever ran."""
    if not view.enabled and not view.workers:
        return
    st.subheader("Workers")
    if not view.workers:
        st.info("No worker has started yet: imports wait in the queue until one runs (`memsys worker`).",
                icon=":material/engineering:")
        return
    now = time.time()
    rows = [{
        "Worker": w.worker,
        "Host": w.host,
        "PID": w.pid,
        "State": w.state(view.lease_seconds, now),
        "Working on": ", ".join(f"import {c}" for c in w.current) or "waiting for work",
        "Last heartbeat": fmt.when(w.heartbeat),
        "Batches done": w.batches_done,
        "At once": w.concurrency,
    } for w in view.workers]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    where = f" from the queue at {view.queue}" if view.queue else ""
    st.caption(fmt.plain(f"Imports are run by these workers{where}. A worker not heard from for "
                         f"{view.lease_seconds:g} s loses its batch to another worker."))


def batch_workers(rows: list[dict[str, object]]) -> None:
    """Which worker did each batch of one import (nothing for an import run in one process)."""
    if not rows:
        return
    with st.expander("Workers of this import"):
        st.dataframe(pd.DataFrame([{
            "Batch": r["batch_no"],
            "State": r["state"],
            "Done by": r["done_by"] or r["worker"] or "—",
            "Taken over": "yes" if r["taken_over"] else "",
            "Late writes refused": r["refused"] or "",
        } for r in rows]), hide_index=True, width="stretch")
