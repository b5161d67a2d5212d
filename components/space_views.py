"""Where the data directory's space goes, on Home for operators: one folded block with the
size of each part and the disk's free space, and a warning before Weaviate's own
disk-pressure thresholds are reached."""
from __future__ import annotations

from typing import Any

import streamlit as st

from components import format as fmt


def space_block(memsys_engine: Any) -> None:
    """Drawn only for users who may read it (operators and admins)."""
    if not memsys_engine.can("server.space"):
        return
    report = memsys_engine.server.space()
    if report.warning:
        st.warning(report.warning[:1].upper() + report.warning[1:], icon=":material/hard_drive:")
    label = (f"Disk space: {fmt.size(report.total_bytes)} in the data directory, {fmt.size(report.disk_free)} free "
             f"({report.used_percent:.0f}% of the disk used)")
    with st.expander(label, icon=":material/hard_drive:"):
        rows = [f"- {name[:1].upper() + name[1:]}: {fmt.size(n)}"
                + (" (kept outside the data directory)" if name in report.outside else "")
                for name, n in report.parts.items()]
        rows.append(f"- Everything else: {fmt.size(report.other_bytes)}")
        st.markdown("\n".join(rows))
        st.caption("Free space with `memsys jobs prune` (what old imports kept so they could be resumed), "
                   "`memsys cache prune` (cached embeddings no one uses any more) and by removing old backups.")
