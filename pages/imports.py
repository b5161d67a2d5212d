"""Imports: every import, newest first, filtered by state, knowledge base (project) and
day; each opens (by its address, `?job=<id>`) to its summary in documents and memories,
each file's state, its failures with their reasons (and whether a retry can help), its
metrics and its log lines. A running import shows its live progress and Cancel."""
import datetime as dt

import streamlit as st

from components import format as fmt
from components.feedback import guarded, or_stop
from components.follow_views import filter_jobs, job_links, job_title, project_of
from components.job_views import job_summary, live_job
from components.resources import engine
from components.worker_views import batch_workers, workers_panel

HISTORY_LIMIT = 500  # the newest imports the list is made from

st.title("Imports")
st.caption("Every import, how it ended and why: open one to see its documents, its failures and its log lines.")
memsys_engine = or_stop(engine)
job_id = st.query_params.get("job", "")

if job_id:
    if st.button("All imports", icon=":material/arrow_back:"):
        st.query_params.clear()
        st.rerun()
    with guarded():
        job = memsys_engine.jobs.get(job_id)
        if job is None:
            st.warning(f"There is no import {fmt.plain(job_id)}: it may have been deleted. All imports are listed "
                       "under \"All imports\".", icon=":material/search_off:")
            st.stop()
        st.query_params["job"] = job.job_id  # the address names it (a link from this page to itself may not)
        st.subheader(fmt.plain(f"Import of {job_title(job)}"))
        who = f" by {job.started_by}" if job.started_by else ""
        project = project_of(job)
        st.caption(fmt.plain(f"Started {fmt.when(job.started_at or job.created_at)}{who}"
                             + (f" into the knowledge base {project}" if project else "") + f"; import {job.job_id}"))
        if job.is_active:
            live_job(job.job_id)
        else:
            job_summary(job)
        batch_workers(memsys_engine.workers.batches(job.job_id))
    st.stop()

with guarded():
    jobs = memsys_engine.jobs.recent(limit=HISTORY_LIMIT)
    if not jobs:
        st.info("No imports yet: start one on the Import page.", icon=":material/upload_file:")
        st.page_link("pages/import.py", label="Import documents", icon=":material/upload_file:")
        workers_panel(memsys_engine.workers.list())
        st.stop()
    states = list(dict.fromkeys(fmt.job_state(j.state, j.failed) for j in jobs))
    projects = sorted({project_of(j) for j in jobs} - {""})
    state_col, project_col, day_col = st.columns(3)
    chosen_states = state_col.multiselect("State", states, placeholder="Any state")
    chosen_project = project_col.selectbox("Knowledge base (project)", ["Any knowledge base", *projects])
    first_day = min(dt.datetime.fromtimestamp(j.started_at or j.created_at).date() for j in jobs)
    days = day_col.date_input("Started between", (first_day, dt.date.today()), format="YYYY-MM-DD")
    since, until = (days if isinstance(days, tuple) and len(days) == 2
                    else (days[0], None) if isinstance(days, tuple) and days else (None, None))
    matching = filter_jobs(jobs, chosen_states, "" if chosen_project == "Any knowledge base" else chosen_project,
                           since, until)
    st.caption(f"{fmt.plural(len(matching), 'import')} of {len(jobs):,}" +
               (f" (the newest {HISTORY_LIMIT:,})" if len(jobs) >= HISTORY_LIMIT else ""))
    job_links(matching[:200], "history")
    if len(matching) > 200:
        st.caption(f"The newest 200 are shown; narrow the filters to see the other {len(matching) - 200:,}.")

with guarded():
    workers_panel(memsys_engine.workers.list())
