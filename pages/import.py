"""Import: upload files (or a zip), say whose memories they are, map csv/jsonl columns,
preview what will be created and what it costs, then start. The import runs in the
engine's job runner; this page only shows its progress, so leaving and coming back
finds it still running."""
import streamlit as st

from components.batch_settings import batch_config
from components.feedback import guarded, or_stop
from components.import_views import column_mapping, forget_files, mirror_check, preview_task, spooled_files
from components.inputs import kept
from components.follow_views import ask_to_scroll, scroll_to_progress
from components.job_views import job_summary, live_job
from components.resources import engine
from components import format as fmt
from components.fields import import_defaults
from components.knowledge_views import remember_import, whose_memories
from memsys.engine import UPLOAD_ORIGIN, MemoryDefaults

st.title("Import")
st.caption("Turn documents into memories: each file is read, cut into memories, embedded and stored.")
memsys_engine = or_stop(engine)
state = st.session_state
job_id = state.get("import_job") or st.query_params.get("job")
job = memsys_engine.jobs.get(job_id) if job_id else None

# --- the import this session is following ----------------------------------------------
if job is not None:
    state["import_job"] = job.job_id
    st.subheader(fmt.plain(f"Importing {job.label}" if job.is_active else f"Import of {job.label}"))
    if job.is_active:
        live_job(job.job_id)
        scroll_to_progress()  # after Start the page was scrolled down at the button
    else:
        job_summary(job)
        if st.button("Start another import", icon=":material/add:"):
            state.pop("import_job", None)
            st.query_params.pop("job", None)
            st.rerun()

others = [j for j in memsys_engine.jobs.recent(limit=20) if j.is_active and j.job_id != job_id]
for other in others:
    left, right = st.columns([4, 1])
    left.info(f"Also running: {fmt.plain(other.label)} ({fmt.job_state(other.state, other.failed).lower()}, "
              f"{other.processed:,} of {fmt.plural(other.total, 'memory', 'memories')}).", icon=":material/sync:")
    if right.button("Follow it", key=f"follow_{other.job_id}"):
        state["import_job"] = other.job_id
        st.query_params["job"] = other.job_id
        st.rerun()

if job is not None and job.is_active:
    st.caption("You can prepare the next import below; it starts when this one has finished.")
elif job is not None:
    st.stop()

st.subheader("1. Files")
paths = spooled_files(memsys_engine)

st.subheader("2. Which knowledge base")
whose = whose_memories(memsys_engine)
project, repo, agent, tags, source = whose.project, whose.repo, whose.agent, whose.tags, whose.source

mapping = None
structured = [p for p in paths if memsys_engine.imports.is_structured(p)]
if structured:
    st.subheader("3. Columns")
    mapping = column_mapping(memsys_engine, structured)

st.subheader(f"{4 if structured else 3}. Preview and start")
config = batch_config()
sizes = config.text_type_batch_sizes or {}
st.caption(f"Batch settings: {sizes['short']} short to {sizes['very_long']} very long memories per batch, "
           f"{config.max_retries} retries, {'continue' if config.continue_on_error else 'stop'} after a failed batch, "
           f"embedding cache {'on' if config.enable_cache else 'off'} (change them on Batch settings).")
mirror = kept(st.checkbox, "Mirror these files: remove the documents an earlier import of the same files had "
              "that they no longer have", "import_mirror", False,
              help="For a folder packed as a zip, or the same set of files, imported again under the same project "
                   "and repo: a document gone from it is removed from the store. You see how many before anything goes.")
# The uploads' names are what repeats between imports of "the same folder" (each upload
# lands in a new spool folder).
origin = [f"{UPLOAD_ORIGIN}{p.name}" for p in paths] if mirror else []
left, right = st.columns(2)
preview_clicked = left.button("Preview", icon=":material/visibility:", disabled=not paths)
start_clicked = right.button("Start import", type="primary", icon=":material/play_arrow:", disabled=not paths)
if not paths:
    st.caption("Add at least one file to preview or start an import.")


def start(defaults: MemoryDefaults) -> None:
    new_job = memsys_engine.imports.start(paths, defaults, mapping=mapping, config=config, origin=origin, mirror=mirror)
    remember_import(memsys_engine, defaults)
    state.pop("mirror_removals", None)
    state["import_job"] = new_job
    st.query_params["job"] = new_job
    ask_to_scroll()
    forget_files()
    st.rerun()


preview_task(memsys_engine, preview_clicked, repr((paths, project, repo, agent, tags, source, mapping, config, mirror)),
             lambda: memsys_engine.imports.start_preview(paths, import_defaults(project, repo, agent, tags, source),
                                                 mapping=mapping, config=config, origin=origin), mirror=mirror)

if start_clicked and not mirror:
    with guarded():
        start(import_defaults(project, repo, agent, tags, source))
found = mirror_check(start_clicked and mirror,
                     lambda: memsys_engine.imports.start_preview(paths, import_defaults(project, repo, agent, tags, source),
                                                         mapping=mapping, config=config, origin=origin, limit=0))
if found is not None:
    with guarded():
        if not found.mirror_documents:
            start(import_defaults(project, repo, agent, tags, source))
        # Removing is shown, and confirmed, before it happens.
        state["mirror_removals"] = (found.mirror_documents, found.mirror_memories, [str(p) for p in paths])

removals = state.get("mirror_removals")
if mirror and removals and removals[2] == [str(p) for p in paths]:
    documents, memories, _ = removals
    st.warning(f"This mirror import will remove {fmt.plural(documents, 'document')} ({fmt.plural(memories, 'memory', 'memories')}) "
               "that earlier imports of these files had and they no longer have.", icon=":material/delete_sweep:")
    if st.button(f"Import and remove {fmt.plural(documents, 'document')}", icon=":material/sync:"):
        with guarded():
            start(import_defaults(project, repo, agent, tags, source))
