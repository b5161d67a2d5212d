"""Following an import: the progress line that moves per memory, each file's state, the
one line that says what happened in documents, the toast when a long import ends, and
the list of past imports that opens each one (the Imports page, Home)."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from components import format as fmt
from memsys.engine import FileState, JobProgress

IMPORTS = "pages/imports.py"
MEMORIES = "pages/memories.py"
METRICS = "pages/metrics.py"
# An import that took at least this long says so with a toast when it ends.
LONG_IMPORT_SECONDS = 10.0
_TOAST = "follow_toast_job"
SMALL_TABLE = 30  # files shown as a plain table up to this many, as a scrolling one beyond
_SCROLL = "follow_scroll_to_progress"

_STAGES = {
    "queued": "queued",
    "reading": "reading",
    "embedding": "embedding",
    "writing": "writing",
    "done": "done",
    "failed": "failed",
    "not started": "not started",
    "partly done": "partly imported, the rest not started",
}


def progress_line(job: JobProgress) -> None:
    """The bar and its sentence: memories stored, and those embedded on their way to be
    written (so it moves inside a batch, not only when a batch ends)."""
    if not job.planned:
        text = f"{fmt.job_state(job.state)}: {fmt.plural(job.total, 'memory', 'memories')} found so far"
        if job.ocr_pages:
            text += f", {fmt.plural(job.ocr_pages, 'scanned page')} read by OCR"
        st.progress(0.0, text=text)
        return
    moving = min(job.total, job.processed + job.embedded)
    text = f"{fmt.job_state(job.state)}: {job.processed:,} of {fmt.plural(job.total, 'memory', 'memories')} stored"
    if job.embedded:
        text += f", {job.embedded:,} more embedded"
    st.progress(moving / job.total if job.total else 0.0, text=text)


def file_stage(file: FileState, job: JobProgress) -> str:
    """A file's state in words, with the reason of a failure."""
    stage = file.stage(job.state)
    if stage == "queued" and not job.planned:
        stage = "reading"
    words = _STAGES.get(stage, stage)
    if stage in ("embedding", "writing", "queued") and file.settled:
        words += f" ({file.settled:,} of {file.memories:,} done)"
    if stage == "failed" and file.reason:
        words += f": {file.reason}"
    elif stage == "done" and file.failed:
        words += f", {fmt.plural(file.failed, 'memory', 'memories')} failed: {file.reason}"
    return words


def file_table(job: JobProgress, files: Sequence[FileState]) -> None:
    """One row per file of the import: its state and its memories."""
    if not files:
        return
    rows = [{"Document": f.name, "State": file_stage(f, job),
             "Memories": "—" if f.unreadable and f.memories == f.failed else f.memories,
             "Written": f.written, "Unchanged": f.unchanged + f.updated, "Failed": f.failed} for f in files]
    frame = pd.DataFrame(rows)
    if len(rows) <= SMALL_TABLE:
        st.table(frame.set_index("Document"))  # plain text on the page, read by anyone (and any test)
    else:
        st.dataframe(frame, hide_index=True, width="stretch")


def documents_line(job: JobProgress, files: Sequence[FileState]) -> str:
    """What the import did, in documents: "8 documents imported, 1 file could not be read:
    broken-scan.pdf, damaged PDF"."""
    stages = [(f, f.stage(job.state)) for f in files]
    imported = [f for f, s in stages if s == "done"]
    failed = [f for f, s in stages if s == "failed"]
    partial = [f for f, s in stages if s == "partly done"]
    untouched = [f for f, s in stages if s == "not started"]
    parts = [f"{fmt.plural(len(imported), 'document')} imported"]
    if partial:
        parts.append(f"{fmt.plural(len(partial), 'document')} partly imported")
    if untouched:
        parts.append(f"{fmt.plural(len(untouched), 'document')} not started")
    if failed:
        unreadable = [f for f in failed if f.unreadable]
        named = "; ".join(f"{f.name}, {_short(f.reason)}" for f in failed[:3]) + ("; …" if len(failed) > 3 else "")
        parts.append(f"{fmt.plural(len(failed), 'file')} could not be read: {named}" if len(unreadable) == len(failed)
                     else f"{fmt.plural(len(failed), 'document')} failed: {named}")
    return ", ".join(parts)


def _short(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= 120 else reason[:119] + "…"


def outcome_in_documents(job: JobProgress, files: Sequence[FileState]) -> None:
    """The one line in documents, and where to see them."""
    if not files:
        return
    st.markdown(f"**{fmt.plain(documents_line(job, files))}.**")
    project = str(job.request.get("defaults", {}).get("project") or "")
    links = st.columns(3)
    if job.written + job.updated + job.unchanged:
        links[0].page_link(MEMORIES, label="Search and browse them", icon=":material/search:",
                           query_params={"project": project} if project else None)
    links[1].page_link(METRICS, label="This import's metrics", icon=":material/monitoring:",
                       query_params={"job": job.job_id})
    links[2].page_link(IMPORTS, label="All imports", icon=":material/history:")


def remember_to_announce(job: JobProgress) -> None:
    """The live view saw the job end: the next run of the page shows a toast for it."""
    st.session_state[_TOAST] = job.job_id


def announce_end(job: JobProgress) -> None:
    """A toast when an import the page was following ends after a long run."""
    if st.session_state.get(_TOAST) != job.job_id:
        return
    st.session_state.pop(_TOAST, None)
    took = (job.finished_at or 0) - (job.started_at or job.created_at)
    if took < LONG_IMPORT_SECONDS:
        return
    if job.state == "completed" and not job.failed:
        st.toast(f"Import finished: {fmt.plural(job.written, 'memory', 'memories')} written.", icon=":material/check_circle:",
                 duration="long")
    elif job.state == "completed":
        st.toast(f"Import finished with {fmt.plural(job.failed, 'failed memory', 'failed memories')}.", icon=":material/warning:",
                 duration="long")
    else:
        st.toast(f"Import {fmt.job_state(job.state).lower()}.", icon=":material/stop_circle:", duration="long")


def ask_to_scroll() -> None:
    """The next run brings the progress into view (after Start, the page is scrolled down
    at the button)."""
    st.session_state[_SCROLL] = True


def scroll_to_progress() -> None:
    """Scroll the page's main area to its top, where the progress is, once if asked."""
    if not st.session_state.pop(_SCROLL, False):
        return
    # Tried for three seconds: the page above the button grows while this run draws, and
    # the browser keeps the button where it was until the progress is there to show.
    # Tried for three seconds: the page above the button grows while this run draws, and
    # the browser keeps the button where it was until the progress is there to show. (A
    # component's frame is of this page's origin, so it may scroll its parent.)
    components.html("<script>(function(){const doc=window.parent.document;let n=0;const go=()=>{"
                    "const m=doc.querySelector('[data-testid=stMain]');const bar=doc.querySelector('[data-testid=stProgress]');"
                    "if(m){m.scrollTo({top:0});}"
                    "if(n++<30&&!(bar&&n>10)){setTimeout(go,100);}};go();})();</script>", height=0)


def job_title(job: JobProgress) -> str:
    """An import named by its files, at most three of them."""
    names = [str(p).rsplit("/", 1)[-1] for p in job.request.get("paths") or []]
    if not names:
        return job.label
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")


def job_outcome(job: JobProgress) -> str:
    """An import's result in a few words, for a list."""
    state = fmt.job_state(job.state, job.failed)
    counts = f"{fmt.plural(job.written, 'memory', 'memories')} written"
    if job.unchanged or job.updated:
        counts += f", {job.unchanged + job.updated:,} unchanged"
    if job.failed:
        counts += f", {job.failed:,} failed"
    if job.state in ("cancelled", "failed", "interrupted") and job.pending:
        counts += f", {job.pending:,} not started"
    return f"{state}: {counts}"


def job_links(jobs: Sequence[JobProgress], key: str) -> None:
    """Past imports, each a link to its page (summary, failures, log lines)."""
    for job in jobs:
        when_col, link_col, state_col = st.columns([2, 5, 5])
        when_col.caption(fmt.when(job.started_at or job.created_at))
        link_col.page_link(IMPORTS, label=fmt.plain(job_title(job)), query_params={"job": job.job_id},
                           icon=":material/history:" if not job.is_active else ":material/sync:")
        state_col.caption(job_outcome(job))


def project_of(job: JobProgress) -> str:
    return str(job.request.get("defaults", {}).get("project") or "")


def filter_jobs(jobs: Sequence[JobProgress], states: Sequence[str], project: str, since: dt.date | None,
                until: dt.date | None) -> list[JobProgress]:
    """The jobs in any of `states` (their labels; all when empty), of `project` ("" for
    all), started between the two days (local time, both included)."""
    out = []
    for job in jobs:
        if states and fmt.job_state(job.state, job.failed) not in states:
            continue
        if project and project_of(job) != project:
            continue
        day = dt.datetime.fromtimestamp(job.started_at or job.created_at).date()
        if (since and day < since) or (until and day > until):
            continue
        out.append(job)
    return out
