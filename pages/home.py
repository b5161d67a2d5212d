"""Home: the next step first (a button: import documents, or search them), then what
imports ran recently and how they ended; whether everything is connected (Weaviate, the
embedder, the cache, the cluster) is below, folded, for operators."""
import streamlit as st

from components.backup_views import scheduled_backup_warning
from components.cluster_views import cluster_panel
from components.feedback import guarded, or_stop
from components.resources import engine
from components import format as fmt
from components.follow_views import job_links
from components.guidance import IMPORT, next_steps, primary_step
from components.log_views import weaviate_problems
from components.space_views import space_block

st.title("memsys")
st.caption("Import your documents, then search them: each document is cut into memories you can find by meaning "
           "or by keyword.")
memsys_engine = or_stop(engine)

memories, store = None, None
with guarded():
    with st.spinner("Connecting to the memory store (starting it takes about 15 seconds)…"):
        store = memsys_engine.status.store()
    memories = store.memories
jobs = memsys_engine.jobs.recent(limit=10)

may_import = memsys_engine.can("imports.create")
step = primary_step(memories, jobs, may_import)
with st.container(border=True):
    st.markdown(f"**{step.text}**")
    buttons = st.columns(max(len(step.actions), 1) + 2)
    for number, action in enumerate(step.actions):
        if buttons[number].button(action.label, icon=action.icon, type="primary" if number == 0 else "secondary",
                                  key=f"next_step_{number}"):
            st.switch_page(action.page)
others = [s for s in next_steps(memories, jobs, with_first_step=False) if may_import or s.page != IMPORT]
for other in others:
    st.page_link(other.page, label=other.text, icon=":material/arrow_forward:", query_params=other.query)

with guarded():  # sources whose syncs keep failing: one line each (the Sources page has the rest)
    for failing in memsys_engine.sources.failing():
        retry = f"tried again {fmt.when(failing.next_due_at)}" if failing.next_due_at else "synced again when asked"
        st.warning(f"Source **{failing.name}** failed {fmt.count(failing.failures)} times in a row "
                   f"({failing.last_error}); {retry}.", icon=":material/sync_problem:")
    scheduled_backup_warning()  # operators: the newest scheduled backup failed

st.subheader("Recent imports")
if jobs:
    job_links(jobs[:5], "home")  # each opens its import
    st.page_link("pages/imports.py", label="All imports", icon=":material/history:")
else:
    st.caption("No imports yet.")

with guarded():
    weaviate_problems(memsys_engine.server.problems())
    space_block(memsys_engine)  # operators: where the data directory's space goes, folded

with st.expander("For operators: server, embeddings, cache and cluster", icon=":material/dns:"):
    store_box, embedder_box, cache_box = st.columns(3)
    with store_box.container(border=True), guarded():
        st.markdown("**Memory store**")
        st.metric("Memories", fmt.count(memories))
        if store is not None:
            st.caption(f"Weaviate {store.version}, {store.mode} mode, collection {store.collection}")
        server_status = memsys_engine.server.status(count_objects=False)
        st.caption(fmt.server_summary(server_status))
        if server_status.watch_problem:
            st.warning(server_status.watch_problem[:1].upper() + server_status.watch_problem[1:], icon=":material/warning:")
    with embedder_box.container(border=True), guarded():
        st.markdown("**Embeddings**")
        embedder = memsys_engine.status.embedder()
        st.metric("Provider", embedder.provider)
        where = f" at {embedder.base_url}" if embedder.base_url else ""
        st.caption(f"Model {embedder.model}{where}, {embedder.dimensions or 'unknown'} dimensions")
    with cache_box.container(border=True), guarded():
        st.markdown("**Embedding cache**")
        cache = memsys_engine.cache.info()
        st.metric("Cached embeddings", fmt.count(cache["num_entries"]))
        lookups = cache["hits"] + cache["misses"]
        st.caption(f"{fmt.size(cache['total_size_bytes'])} on disk, "
                   f"hit rate {fmt.percent(cache['hit_rate']) if lookups else '— (not used yet)'}")
    with st.container(border=True), guarded():
        cluster_panel(memsys_engine.server.cluster())
