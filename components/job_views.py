"""An import job on screen: live progress (polled every second from the job store by a
fragment, so the page script never waits on the import), and the summary at the end with
the failed items, their reasons, "Retry failed" and a CSV of the failures."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from components.cluster_views import replication_report
from components.feedback import guarded
from components.resources import engine
from memsys.engine import FAILED_PAGE, JobProgress
from components import format as fmt
from components.explain import sentence
from components.preview_views import nothing_to_do_sentence
from components.follow_views import announce_end, file_table, outcome_in_documents, progress_line, remember_to_announce
from components.tables import csv_text, failed_rows


def job_figures(job: JobProgress, *, live: bool) -> None:
    """The counts everyone asks about, in one row."""
    columns = st.columns(7 if live else 6)
    columns[0].metric("Written", fmt.count(job.written))
    columns[1].metric("Updated", fmt.count(job.updated),
                      help="Already stored with the same text; its tags, source or place changed and were updated.")
    columns[2].metric("Unchanged", fmt.count(job.unchanged), help="Already stored exactly like this; not written again.")
    columns[3].metric("Failed", fmt.count(job.failed))
    columns[4].metric("Memories per second", f"{job.items_per_second:.1f}")
    lookups = job.cache_hits + job.cache_misses
    columns[5].metric("Cache hit rate", fmt.percent(job.cache_hit_rate) if lookups else "—",
                      help=f"{job.cache_hits:,} from the cache, {job.cache_misses:,} embedded")
    if live:
        columns[6].metric("Time left", fmt.duration(job.eta_seconds))


@st.fragment(run_every=1)
def live_job(job_id: str) -> None:
    """Progress of a running job, refreshed every second: the bar (moving per memory),
    Cancel, the figures and each file's state; the whole page reruns once the job is
    over, to show its summary."""
    job = engine().jobs.get(job_id)
    if job is None or not job.is_active:
        if job is not None:
            remember_to_announce(job)
        st.rerun()
    progress_line(job)
    if job.state == "cancelling":
        st.info("Stopping: what is written stays written; the memories not written yet are left for a resume…",
                icon=":material/stop_circle:")
    elif engine().can("jobs.cancel") and st.button("Cancel", icon=":material/stop_circle:", key=f"cancel_{job_id}"):
        engine().jobs.cancel(job_id)
        st.rerun(scope="fragment")
    job_figures(job, live=True)
    batch = f"batch {job.current_batch} in progress, " if job.current_batch and job.state == "running" else ""
    st.caption(f"{batch}{fmt.plural(job.batches_done, 'batch', 'batches')} done; started {fmt.when(job.started_at or job.created_at)}")
    if job.budget is not None:
        st.caption(f"Embedding budget: {job.budget.describe()}")
    file_table(job, engine().jobs.file_states(job_id))


def _outcome(job: JobProgress) -> None:
    took = fmt.duration(job.finished_at - job.started_at) if job.finished_at and job.started_at else "—"
    updated = f"{job.updated:,} updated, " if job.updated else ""  # said only when there were any
    counts = (f"{job.written:,} written, {updated}{job.unchanged:,} unchanged, {job.failed:,} failed "
              f"of {fmt.plural(job.total, 'memory', 'memories')}")
    if job.removed:
        counts += f"; {fmt.plural(job.removed, 'stored memory', 'stored memories')} no longer in the input removed"
    resume = " Resume to finish it; nothing is imported twice." if job.is_resumable else ""
    what = "Re-embed" if job.request.get("reembed_into") else "Import"
    if job.state == "completed" and not job.failed and job.total and job.unchanged == job.total and not job.removed:
        st.success(f"{what} finished in {took}. {nothing_to_do_sentence(job.total)}", icon=":material/check_circle:")
    elif job.state == "completed" and not job.failed:
        switched = f" Search now uses {job.request['reembed_into']}." if what == "Re-embed" else ""
        st.success(f"{what} finished in {took}: {counts}.{switched}", icon=":material/check_circle:")
    elif job.state == "completed":
        st.warning(f"{what} finished in {took} with failures: {counts}. The reasons are below.", icon=":material/warning:")
    elif job.state == "cancelled":
        done = f"{fmt.plural(job.written, 'memory', 'memories')} written"
        done += f", {job.updated:,} updated" if job.updated else ""
        done += f", {job.unchanged:,} unchanged" if job.unchanged else ""
        done += f", {job.failed:,} failed" if job.failed else ""
        st.warning(f"{what} cancelled: {done}, {job.pending:,} not started.{resume}", icon=":material/stop_circle:")
    elif job.state == "interrupted":
        st.warning(f"The {what.lower()} was interrupted (the dashboard stopped while it ran): {counts}.{resume}",
                   icon=":material/pause_circle:")
    else:
        reason = sentence(job.error) if job.error else "The import stopped."
        st.error(f"{reason} So far: {counts}.{resume}", icon=":material/error:")


def job_summary(job: JobProgress) -> None:
    """A finished (or stopped) job: what happened (in documents, then in memories), each
    file's state, what failed and why, and what to do."""
    announce_end(job)
    memsys_engine = engine()
    files = memsys_engine.jobs.file_states(job.job_id)
    outcome_in_documents(job, files)
    _outcome(job)
    job_figures(job, live=False)
    if files:
        with st.expander(f"{fmt.plural(len(files), 'document')}, one by one", expanded=len(files) <= 12):
            file_table(job, files)
    if memsys_engine.can("logs.read"):  # the Logs page is an admin's
        st.page_link("pages/logs.py", label="This import's log lines", icon=":material/receipt_long:",
                     query_params={"job": job.job_id})
    total_failed, retryable = memsys_engine.jobs.failed_counts(job.job_id) if job.failed else (0, 0)
    actions = st.columns(4)
    if job.is_resumable and engine().can("jobs.resume") and actions[0].button("Resume", type="primary", icon=":material/play_arrow:"):
        with guarded():
            memsys_engine.jobs.resume(job.job_id)
            st.rerun()
    if retryable and engine().can("jobs.retry_failed") and actions[1].button(f"Retry failed ({retryable:,})", type="primary", icon=":material/replay:"):
        with guarded():
            memsys_engine.jobs.retry_failed(job.job_id)
            st.rerun()
    verifiable = job.written + job.unchanged and engine().can("jobs.verify")
    if verifiable and actions[3].button("Verify replicas", icon=":material/verified:",
                                        help="Check that every memory of this job is on every replica"):
        with guarded(), st.spinner("Checking every memory on every replica…"):
            replication_report(engine().jobs.verify(job.job_id))
    if total_failed:
        # Built on click, on Streamlit's download thread (not this script's), from the store a page at a time.
        actions[2].download_button("Failures as CSV",
                                   lambda: csv_text(pd.DataFrame(failed_rows(memsys_engine.jobs.iter_failed_items(job.job_id)))),
                                   file_name=f"failures-{job.job_id}.csv", mime="text/csv", icon=":material/download:")
        pages = math.ceil(total_failed / FAILED_PAGE)
        st.markdown(f"**{fmt.plural(total_failed, 'failure')}**" +
                    (f" ({FAILED_PAGE:,} a page; the CSV has all)" if pages > 1 else ""))
        page = st.number_input("Page", 1, pages, 1, key=f"failed_page_{job.job_id}") if pages > 1 else 1
        failed = memsys_engine.jobs.failed_items(job.job_id, page=int(page) - 1)
        st.dataframe(pd.DataFrame(failed_rows(failed)), hide_index=True, width="stretch")
        if retryable < total_failed:
            st.caption("Items marked \"no (fix the file)\" could not be read at all: correct the file and import it again.")
    warned, warnings = memsys_engine.jobs.warnings(job.job_id)
    if warned:
        with st.expander(f"{fmt.plural(warned, 'warning')}: files read, but not exactly as written"):
            st.dataframe(pd.DataFrame(warnings, columns=["Item", "Warning"]), hide_index=True, width="stretch")
