"""Cache: what the embedding cache holds and how often it saves a provider call; a health
check that finds entries that cannot be trusted, and repair; warm-up; clearing."""
from pathlib import Path

import pandas as pd
import streamlit as st

from components.cache_views import health_report, prune_hint
from components.feedback import guarded, or_stop
from components.resources import engine
from components.task_views import start_task, task_result
from components import format as fmt
from components.fields import text_lines
from components.tables import cache_model_rows, job_cache_rows

st.title("Embedding cache")
st.caption(
    "Every text embedded once is kept here, so importing it again costs no provider call. "
    "Embeddings are kept per provider and model: changing the model never returns another model's embeddings."
)

memsys_engine = or_stop(engine)
with guarded():
    info = memsys_engine.cache.info()
    entries, size, lifetime, process = st.columns(4)
    entries.metric("Cached embeddings", fmt.count(info["num_entries"]))
    limit = f"limit {fmt.size(info['size_limit_bytes'])}" if info.get("evicts") else "no size limit"
    size.metric("Size on disk", fmt.size(info["total_size_bytes"]), help=limit)
    lifetime.metric("Hit rate, all time", fmt.percent(info["hit_rate"]) if info["hits"] + info["misses"] else "—",
                    help=f"{info['hits']:,} hits, {info['misses']:,} misses")
    seen = info["session_hits"] + info["session_misses"]
    process.metric("Hit rate since start",
                   fmt.percent(info["session_hits"] / seen) if seen else "—",
                   help=f"Since the dashboard started: {info['session_hits']:,} hits, {info['session_misses']:,} misses")
    st.caption(f"In use now: {info['provider']} / {info['model']} ({info['dimensions'] or '?'} dimensions). "
               f"Kept in the data folder, under {'/'.join(Path(info['directory']).parts[-2:])}.")

    st.subheader("By provider and model")
    rows = cache_model_rows(info)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        prune_hint(info)
    else:
        st.caption("The cache is empty.")
    st.subheader("Per import")
    imports = memsys_engine.jobs.recent(limit=20)
    tokens = {job.job_id: timings.tokens for job in imports if (timings := memsys_engine.timings.job(job.job_id))}
    rows = job_cache_rows(imports, tokens, memsys_engine.status.embedder().price_per_million_tokens)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.caption("No import has finished yet.")

if memsys_engine.can("cache.check"):  # operators and admins; repair and clear are admins' only
    st.subheader("Health check")
    st.caption("Reads every entry and checks it can be trusted: its size, its numbers, the model it names. "
               "Imports can keep running meanwhile.")
    check, repair = st.columns(2)
    if check.button("Check the cache", icon=":material/health_and_safety:"):
        start_task("cache_check", "cache-check", lambda progress: memsys_engine.cache.check(fix=False, progress=progress))
    report = task_result("cache_check", "Checking the cached embeddings")
    if report is not None:
        health_report(report)
        if memsys_engine.can("cache.check", fix=True) and repair.button(
                "Repair", type="primary", icon=":material/build:", disabled=report.ok or report.fix):
            start_task("cache_check", "cache-repair", lambda progress: memsys_engine.cache.check(fix=True, progress=progress))
            st.rerun()

if memsys_engine.can("cache.warm_up"):
    st.subheader("Warm up")
    st.caption("Embed the text you expect to import, so the import itself finds it in the cache.")
    typed_tab, file_tab = st.tabs(["Type or paste lines", "From a text file"])
    with typed_tab:
        typed = st.text_area("One text per line", height=120)
    with file_tab:
        upload = st.file_uploader("A text file, one text per line (or .jsonl with a \"content\" field)",
                                  type=["txt", "md", "csv", "log", "jsonl"], key="warmup_file")
    if st.button("Warm up the cache", icon=":material/local_fire_department:"):
        texts = text_lines(typed)
        with guarded():
            # The file goes to the spool first and is read a line at a time, never whole.
            spooled = memsys_engine.imports.spool_upload(upload.file_id, upload.name, upload) if upload else None
            if not texts and spooled is None:
                st.warning("Type some lines or choose a file first.")
            else:
                files = [spooled] if spooled is not None else []
                start_task("cache_warmup", "cache-warmup",
                           lambda progress: memsys_engine.cache.warm_up(texts, files=files, progress=progress))
    warmed = task_result("cache_warmup", "Embedding")
    if warmed is not None:
        st.success(f"Warmed up {fmt.plural(warmed.texts, 'embedding')}: {warmed.already_cached:,} were already cached, "
                   f"{warmed.embedded:,} embedded now.", icon=":material/check:")

if memsys_engine.can("cache.clear"):
    st.subheader("Clear")
    with st.container(border=True):
        st.markdown("Deletes every cached vector, for every model. Imports keep working but embed everything again.")
        sure = st.checkbox("I understand: every text will be embedded again")
        if st.button("Clear the cache", icon=":material/delete_forever:", disabled=not sure):
            with guarded():
                removed = memsys_engine.cache.clear()
                st.success(f"Removed {fmt.plural(removed, 'cached embedding')}.", icon=":material/check:")
