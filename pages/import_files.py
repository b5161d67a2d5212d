"""Import: upload files (or a zip), say whose memories they are, map csv/jsonl columns,
preview what will be created and what it costs, then start. The import runs in the
engine's job runner; this page only shows its progress, so leaving and coming back
finds it still running."""
from pathlib import Path

import pandas as pd
import streamlit as st

from components.batch_settings import batch_config
from components.feedback import guarded, or_stop
from components.inputs import kept
from components.job_views import job_summary, live_job
from components.resources import engine
from memsys.ingest.readers import MAPPED_FIELDS, FieldMapping
from memsys.ui import format as fmt
from memsys.ui.columns import columns_in, is_structured
from memsys.ui.inputs import import_defaults
from memsys.ui.tables import preview_rows, problem_rows

UPLOAD_TYPES = ["txt", "text", "md", "markdown", "rst", "log", "html", "htm", "xhtml", "pdf", "docx",
                "csv", "tsv", "jsonl", "ndjson", "json", "zip"]
AUTOMATIC = "(found by name)"

st.title("Import")
st.caption("Turn documents into memories: each file is read, cut into chunks, embedded and stored.")
memsys_engine = or_stop(engine)
state = st.session_state
job_id = state.get("import_job") or st.query_params.get("job")
job = memsys_engine.jobs.get(job_id) if job_id else None

# --- the import this session is following ----------------------------------------------
if job is not None:
    state["import_job"] = job.job_id
    st.subheader(f"Importing {job.label}" if job.is_active else f"Import of {job.label}")
    if job.is_active:
        live_job(job.job_id)
    else:
        job_summary(job)
        if st.button("Start another import", icon=":material/add:"):
            state.pop("import_job", None)
            st.query_params.pop("job", None)
            st.rerun()

others = [j for j in memsys_engine.jobs.list_jobs(limit=20) if j.is_active and j.job_id != job_id]
for other in others:
    left, right = st.columns([4, 1])
    left.info(f"Also running: {other.label} ({fmt.job_state(other.state).lower()}, "
              f"{other.processed:,} of {other.total:,} items).", icon=":material/sync:")
    if right.button("Follow it", key=f"follow_{other.job_id}"):
        state["import_job"] = other.job_id
        st.query_params["job"] = other.job_id
        st.rerun()

if job is not None and job.is_active:
    st.caption("You can prepare the next import below; it starts when this one has finished.")
elif job is not None:
    st.stop()

# --- 1. files ----------------------------------------------------------------------------
st.subheader("1. Files")
files: list[dict] = state.setdefault("import_files", [])
round_no = state.setdefault("uploader_round", 0)
uploads = st.file_uploader(
    "Documents: txt, md, html, pdf, docx, csv, jsonl, json, or a zip of them",
    type=UPLOAD_TYPES, accept_multiple_files=True, key=f"uploader_{round_no}",
)
if uploads:
    # Copy to the spool on disk at once, then let the uploader go so no file stays in memory.
    with guarded():
        for upload in uploads:
            path = memsys_engine.spool_upload(upload.file_id, upload.name, upload)
            files.append({"name": upload.name, "path": str(path), "size": upload.size})
        state["uploader_round"] = round_no + 1
        st.rerun()
for index, item in enumerate(files):
    name, size, remove = st.columns([6, 2, 1])
    name.markdown(f":material/description: {item['name']}")
    size.caption(fmt.size(item["size"]))
    if remove.button("Remove", key=f"remove_{index}_{item['path']}"):
        files.pop(index)
        st.rerun()
paths = [Path(item["path"]) for item in files]

# --- 2. fields ---------------------------------------------------------------------------
st.subheader("2. Whose memories these are")
left, middle, right = st.columns(3)
project = kept(left.text_input, "Project", "import_project", "", placeholder="e.g. handbook")
repo = kept(middle.text_input, "Repo", "import_repo", "", placeholder="e.g. docs")
agent = kept(right.text_input, "Agent", "import_agent", "", placeholder="e.g. support-bot")
left, right = st.columns(2)
tags = kept(left.text_input, "Tags", "import_tags", "", placeholder="separate with commas")
source = kept(right.text_input, "Source", "import_source", "document-import")

# --- 3. columns of csv / jsonl files -------------------------------------------------------
mapping = None
structured = [p for p in paths if is_structured(p)]
if structured:
    st.subheader("3. Columns")
    st.caption("Which column fills which field. Columns with the usual names (content, text, project, tags…) "
               "are found by themselves; a row's own project, repo, agent or tags win over the fields above.")
    columns = list(dict.fromkeys(c for p in structured for c in columns_in(p)))
    options = [AUTOMATIC, *columns]
    chosen = {}
    for column, field_name in zip(st.columns(len(MAPPED_FIELDS)), MAPPED_FIELDS):
        chosen[field_name] = column.selectbox(f"{field_name.capitalize()} column", options, key=f"map_{field_name}")
    separator = st.text_input("Tags in a cell are separated by", value=",", max_chars=3)
    mapping = FieldMapping(**{f: (None if c == AUTOMATIC else c) for f, c in chosen.items()}, tag_separator=separator or ",")

# --- preview and start -------------------------------------------------------------------
st.subheader(f"{4 if structured else 3}. Preview and start")
config = batch_config()
st.caption(f"Batch settings: default {config.default_batch_size} per batch, {config.max_retries} retries, "
           f"{'continue' if config.continue_on_error else 'stop'} after a failed batch (change them on Batch settings).")
preview_clicked, start_clicked = st.columns(2)
preview_clicked = preview_clicked.button("Preview", icon=":material/visibility:", disabled=not files)
start_clicked = start_clicked.button("Start import", type="primary", icon=":material/play_arrow:", disabled=not files)
if not files:
    st.caption("Add at least one file to preview or start an import.")

if preview_clicked:
    with guarded(), st.spinner("Reading the files…"):
        preview = memsys_engine.preview(paths, import_defaults(project, repo, agent, tags, source),
                                        mapping=mapping, config=config)
        provider = memsys_engine.system.router.provider
        figures = st.columns(5)
        figures[0].metric("Memories", fmt.count(preview.memories))
        figures[1].metric("Problems", fmt.count(len(preview.problems)))
        figures[2].metric("Already cached", f"{preview.cached:,} of {preview.distinct:,}",
                          help="Distinct texts the cache already holds: they cost nothing.")
        figures[3].metric("Provider calls", fmt.count(preview.provider_calls))
        paid = provider.price_per_million_tokens > 0
        figures[4].metric("Estimated cost", fmt.money(preview.estimated_cost_usd) if paid else "free",
                          help=(f"{preview.tokens:,} tokens at ${provider.price_per_million_tokens}/million"
                                if paid else f"The {provider.name} model costs nothing per call."))
        st.caption(f"Batch plan: {fmt.batch_plan(preview.batch_sizes)}.")
        if preview.sample:
            st.markdown(f"**The first {len(preview.sample)} memories**")
            st.dataframe(pd.DataFrame(preview_rows(preview.sample)), hide_index=True, width="stretch")
        if preview.problems:
            st.markdown("**Problems** (these items are skipped, with their reason; the rest is imported)")
            st.dataframe(pd.DataFrame(problem_rows(preview.problems)), hide_index=True, width="stretch")

if start_clicked:
    with guarded():
        new_job = memsys_engine.start_import(paths, import_defaults(project, repo, agent, tags, source),
                                             mapping=mapping, config=config)
        state["import_job"] = new_job
        st.query_params["job"] = new_job
        state["import_files"] = []
        st.rerun()
