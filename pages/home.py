"""Home: is everything connected (Weaviate, the embedder, the cache), what imports ran
recently and how they ended, and what to do next."""
import pandas as pd
import streamlit as st

from components.feedback import guarded, or_stop
from components.resources import engine
from memsys.ui import format as fmt
from memsys.ui.guidance import next_steps
from memsys.ui.tables import job_rows

st.title("memsys")
st.caption("Imports documents into the memory store as memories, through a cache of embeddings.")
memsys_engine = or_stop(engine)
memsys_system = memsys_engine.system

store_box, embedder_box, cache_box = st.columns(3)
memories = None
with store_box.container(border=True), guarded():
    st.markdown("**Memory store**")
    with st.spinner("Connecting to Weaviate (embedded Weaviate takes about 15 seconds to start)…"):
        info = memsys_system.store.server_info()
    memories = info["objects"]
    st.metric("Memories", fmt.count(memories))
    st.caption(f"Weaviate {info['version']}, {info['mode']} mode, collection {info['collection']}")
with embedder_box.container(border=True), guarded():
    st.markdown("**Embeddings**")
    provider = memsys_system.router.provider.describe()
    st.metric("Provider", str(provider["provider"]))
    where = f" at {provider['base_url']}" if provider["base_url"] else ""
    st.caption(f"Model {provider['model']}{where}, {provider['dimensions'] or 'unknown'} dimensions")
with cache_box.container(border=True), guarded():
    st.markdown("**Embedding cache**")
    cache = memsys_system.router.get_cache_info()
    st.metric("Cached vectors", fmt.count(cache["num_entries"]))
    lookups = cache["hits"] + cache["misses"]
    st.caption(f"{fmt.size(cache['total_size_bytes'])} on disk, "
               f"hit rate {fmt.percent(cache['hit_rate']) if lookups else '— (not used yet)'}")

jobs = memsys_engine.jobs.list_jobs(limit=10)
st.subheader("What to do next")
for step in next_steps(memories, jobs):
    st.page_link(step.page, label=step.text, icon=":material/arrow_forward:")

st.subheader("Recent imports")
if jobs:
    st.dataframe(pd.DataFrame(job_rows(jobs)), hide_index=True, width="stretch", column_config={"Job": None})
else:
    st.caption("No imports yet.")
