"""The embedding model of the stored memories, where an operator who changed the model
looks (Settings): the store's collections and the embedder of each, the re-embed job (started,
followed and summed up like an import) when the configured embedder differs from the one
search uses, and dropping an old collection once it is not needed."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import format as fmt
from components.feedback import guarded
from components.job_views import job_summary, live_job
from components.resources import engine


def reembed_panel() -> None:
    memsys_engine = engine()
    versions = memsys_engine.collections.versions()
    st.dataframe(pd.DataFrame([{"Collection": v.name, "Searched now": "yes" if v.live else "",
                                "Memories": v.memories, "Embedder": v.embedder} for v in versions]),
                 hide_index=True, width="stretch")
    latest = next((j for j in memsys_engine.jobs.recent(limit=50) if j.request.get("reembed_into")), None)
    if latest is not None and latest.is_active:
        st.markdown(fmt.plain(f"**{latest.label}**"))
        live_job(latest.job_id)
        return
    if latest is not None and latest.job_id == st.session_state.get("reembed_job"):
        job_summary(latest)  # the one this session started: how it ended
    needs = memsys_engine.collections.needs_reembed()
    if not needs:
        st.caption("Search uses a collection made by the configured embedder.")
    else:
        st.warning(f"{fmt.plain(needs)}. Imports are refused until the memories are re-embedded with the configured "
                   "embedder (or the embedding settings are set back). Search keeps using the current collection until "
                   "the re-embed has finished, then switches at once.", icon=":material/sync_problem:")
        if memsys_engine.can("collections.start_reembed"):
            live = next((v for v in versions if v.live), None)
            count = fmt.plural(live.memories, "memory", "memories") if live else "the memories"
            if st.button(f"Re-embed {count}", type="primary", icon=":material/sync:"):
                with guarded():
                    st.session_state["reembed_job"] = memsys_engine.collections.start_reembed()
                    st.rerun()
    old = [v for v in versions if not v.live]
    if old and memsys_engine.can("collections.drop"):
        st.markdown("**Old collections**")
        st.caption("Kept after a re-embed, so nothing is lost until you decide; search no longer uses them.")
        for v in old:
            left, right = st.columns([3, 1])
            sure = left.checkbox(f"Drop {v.name} and its {fmt.plural(v.memories, 'memory', 'memories')} for good",
                                 key=f"drop_sure_{v.name}")
            if right.button("Drop", key=f"drop_{v.name}", disabled=not sure, icon=":material/delete:"):
                with guarded():
                    n = memsys_engine.collections.drop(v.name)
                    st.toast(f"Dropped {v.name} ({fmt.plural(n, 'memory', 'memories')}).")
                    st.rerun()
