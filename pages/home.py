"""Home: is everything connected (Weaviate, the embedder, the cache), what imports ran
recently and how they ended, and what to do next."""
import streamlit as st

from components.cluster_views import cluster_panel
from components.feedback import guarded, or_stop
from components.resources import engine
from components import format as fmt
from components.guidance import next_steps
from components.follow_views import job_links
from components.log_views import weaviate_problems
from components.space_views import space_block

st.title("memsys")
st.caption("Imports documents into the memory store as memories, through a cache of embeddings.")
memsys_engine = or_stop(engine)

store_box, embedder_box, cache_box = st.columns(3)
memories = None
with store_box.container(border=True), guarded():
    st.markdown("**Memory store**")
    with st.spinner("Connecting to Weaviate (starting the memsys server takes about 15 seconds)…"):
        store = memsys_engine.status.store()
    memories = store.memories
    st.metric("Memories", fmt.count(memories))
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
    st.metric("Cached vectors", fmt.count(cache["num_entries"]))
    lookups = cache["hits"] + cache["misses"]
    st.caption(f"{fmt.size(cache['total_size_bytes'])} on disk, "
               f"hit rate {fmt.percent(cache['hit_rate']) if lookups else '— (not used yet)'}")

with guarded():
    weaviate_problems(memsys_engine.server.problems())
    space_block(memsys_engine)

with guarded():  # sources whose syncs keep failing: one line each (the Sources page has the rest)
    for failing in memsys_engine.sources.failing():
        retry = f"tried again {fmt.when(failing.next_due_at)}" if failing.next_due_at else "synced again when asked"
        st.warning(f"Source **{failing.name}** failed {fmt.count(failing.failures)} times in a row "
                   f"({failing.last_error}); {retry}.", icon=":material/sync_problem:")

with st.container(border=True), guarded():
    cluster_panel(memsys_engine.server.cluster())

jobs = memsys_engine.jobs.recent(limit=10)
st.subheader("What to do next")
for step in next_steps(memories, jobs):
    st.page_link(step.page, label=step.text, icon=":material/arrow_forward:", query_params=step.query)

st.subheader("Recent imports")
if jobs:
    job_links(jobs[:5], "home")  # each opens its import
    st.page_link("pages/imports.py", label="All imports", icon=":material/history:")
else:
    st.caption("No imports yet.")
