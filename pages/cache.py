"""Cache: what the embedding cache holds and how often it saves a provider call; a health
check that finds entries that cannot be trusted, and repair; warm-up; clearing."""
import pandas as pd
import streamlit as st

from components.cache_views import health_report
from components.feedback import guarded, or_stop
from components.resources import engine
from components.task_views import start_task, task_result
from memsys.ingest.readers import UndecodableError, decode_bytes
from memsys.ui import format as fmt
from memsys.ui.explain import sentence
from memsys.ui.inputs import text_lines
from memsys.ui.tables import cache_model_rows, job_cache_rows
from memsys.ui.warmup import warm_up

st.title("Embedding cache")
st.caption(
    "Every text embedded once is kept here, so importing it again costs no provider call. "
    "Entries are kept per provider and model: changing the model never returns another model's vectors."
)

memsys_engine = or_stop(engine)
router = memsys_engine.system.router
with guarded():
    info = router.get_cache_info()
    entries, size, lifetime, process = st.columns(4)
    entries.metric("Cached vectors", fmt.count(info["num_entries"]))
    limit = f"limit {fmt.size(info['size_limit_bytes'])}" if info.get("evicts") else "no size limit"
    size.metric("Size on disk", fmt.size(info["total_size_bytes"]), help=limit)
    lifetime.metric("Hit rate, all time", fmt.percent(info["hit_rate"]) if info["hits"] + info["misses"] else "—",
                    help=f"{info['hits']:,} hits, {info['misses']:,} misses")
    seen = info["session_hits"] + info["session_misses"]
    process.metric("Hit rate since start",
                   fmt.percent(info["session_hits"] / seen) if seen else "—",
                   help=f"Since the dashboard started: {info['session_hits']:,} hits, {info['session_misses']:,} misses")
    st.caption(f"In use now: {info['provider']} / {info['model']} ({info['dimensions'] or '?'} dimensions). "
               f"Folder: {info['directory']}")

    st.subheader("By provider and model")
    rows = cache_model_rows(info)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.caption("The cache is empty.")
    st.subheader("Per import")
    rows = job_cache_rows(memsys_engine.jobs.list_jobs(limit=20))
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.caption("No import has used the cache yet.")

st.subheader("Health check")
st.caption("Reads every entry and checks it can be trusted: its size, its numbers, the model it names. "
           "Imports can keep running meanwhile.")
check, repair = st.columns(2)
if check.button("Check the cache", icon=":material/health_and_safety:"):
    start_task("cache_check", "cache-check", lambda progress: router.check_cache(fix=False, progress=progress))
report = task_result("cache_check", "Checking entries")
if report is not None:
    health_report(report)
    if repair.button("Repair", type="primary", icon=":material/build:", disabled=report.ok or report.fix):
        start_task("cache_check", "cache-repair", lambda progress: router.check_cache(fix=True, progress=progress))
        st.rerun()

st.subheader("Warm up")
st.caption("Embed texts you expect to import, so the import itself finds them in the cache.")
typed_tab, file_tab = st.tabs(["Type or paste texts", "From a text file"])
with typed_tab:
    typed = st.text_area("One text per line", height=120)
with file_tab:
    upload = st.file_uploader("A text file, one text per line", type=["txt", "md", "csv", "log"], key="warmup_file")
if st.button("Warm up the cache", icon=":material/local_fire_department:"):
    texts = text_lines(typed)
    try:
        texts += text_lines(decode_bytes(upload.getvalue())) if upload else []
    except UndecodableError as e:
        st.error(sentence(f"{upload.name} {e}"))
    if not texts:
        st.warning("Type some texts or choose a file first.")
    else:
        start_task("cache_warmup", "cache-warmup", lambda progress: warm_up(router, texts, progress))
warmed = task_result("cache_warmup", "Embedding")
if warmed is not None:
    st.success(f"Warmed up {fmt.plural(warmed.texts, 'text')}: {warmed.already_cached:,} were already cached, "
               f"{warmed.embedded:,} embedded now.", icon=":material/check:")

st.subheader("Clear")
with st.container(border=True):
    st.markdown("Deletes every cached vector, for every model. Imports keep working but embed everything again.")
    sure = st.checkbox("I understand: every text will be embedded again")
    if st.button("Clear the cache", icon=":material/delete_forever:", disabled=not sure):
        with guarded():
            removed = router.clear()
            st.success(f"Removed {fmt.plural(removed, 'entry', 'entries')}.", icon=":material/check:")
