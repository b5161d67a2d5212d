"""The Logs page's parts: the filters, the lines (re-read every two seconds by a fragment
while "Follow live" is on) with their download, and the audit trail as a table."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from components import format as fmt
from components.resources import engine
from memsys.config import LOG_LEVELS
from memsys.engine import AuditRecord, LogLine, LogQuery, WeaviateProblem

SHOWN = 1000
SPANS = {"Last 15 minutes": dt.timedelta(minutes=15), "Last hour": dt.timedelta(hours=1),
         "Last 24 hours": dt.timedelta(days=1), "Last 7 days": dt.timedelta(days=7), "Any time": None}


def log_filters(components: list[str], job: str) -> tuple[LogQuery, bool]:
    """The filter controls; returns the query they describe and whether to follow live."""
    level_box, component_box, job_box, span_box = st.columns([1, 2, 2, 1])
    level = level_box.selectbox("Level", LOG_LEVELS, index=LOG_LEVELS.index("INFO"), help="This level and above.")
    chosen = component_box.multiselect("Component", components, placeholder="every component")
    job_id = job_box.text_input("Job", value=job, placeholder="every job", help="An import's job id.")
    span = span_box.selectbox("Time", list(SPANS), index=len(SPANS) - 1)
    text_box, follow_box = st.columns([5, 1])
    text = text_box.text_input("Containing", placeholder="any text")
    follow = follow_box.toggle("Follow live", help="Show new lines as they are written.")
    since = dt.datetime.now(dt.timezone.utc) - SPANS[span] if SPANS[span] else None
    query = LogQuery(level=level, components=tuple(chosen), job_id=job_id.strip() or None, since=since,
                     text=text.strip(), limit=SHOWN)
    return query, follow


def log_lines(query: LogQuery, follow: bool) -> None:
    st.fragment(run_every=2 if follow else None)(_lines)(query)


def _lines(query: LogQuery) -> None:
    lines = engine().logs.read(query)
    if not lines:
        st.info("No log lines match these filters.", icon=":material/filter_alt_off:")
        return
    left, right = st.columns([4, 1])
    left.caption(f"{len(lines):,} lines, newest first" + (f" (the newest {SHOWN:,})" if len(lines) >= SHOWN else "")
                 + f"; last at {lines[-1].time.astimezone():%Y-%m-%d %H:%M:%S}.")
    name = f"memsys-log-{query.job_id}.jsonl" if query.job_id else "memsys-log.jsonl"
    right.download_button("Download these lines", "".join(line.raw + "\n" for line in lines), file_name=name,
                          mime="application/x-ndjson", icon=":material/download:")
    st.dataframe(pd.DataFrame([_row(line) for line in reversed(lines)]), hide_index=True, width="stretch",
                 column_config={"Details": st.column_config.TextColumn(width="medium")})


def _row(line: LogLine) -> dict[str, object]:
    return {
        "Time": line.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "Level": line.level,
        "Component": line.component,
        "Job": line.job_id or "",
        "Batch": "" if line.batch is None else str(line.batch),
        "Process": line.process,  # "worker@host:pid" names the worker that wrote the line
        "Message": line.message,
        "Details": json.dumps(line.fields, ensure_ascii=False) if line.fields else "",
    }


def weaviate_problems(problems: list[WeaviateProblem]) -> None:
    """Embedded Weaviate's recent problems, one warning per kind, the newest message of
    each: nothing at all when Weaviate reported none."""
    newest: dict[str, WeaviateProblem] = {}
    for problem in problems:
        newest[problem.kind] = problem
    for problem in newest.values():
        when = f" ({problem.time.astimezone():%Y-%m-%d %H:%M})" if problem.time else ""
        icon = ":material/error:" if problem.kind in ("failed_start", "disk_pressure") else ":material/warning:"
        st.warning(f"{problem.meaning}. Weaviate said{when}: {fmt.plain(problem.message)}", icon=icon)


def audit_table(records: list[AuditRecord]) -> None:
    """Who did what, newest first. The trail is append-only: there is nothing to edit."""
    st.caption("Imports started, cancelled, resumed and retried; memories deleted; the cache repaired or cleared; "
               "settings changed; and what was refused. Records cannot be changed or removed.")
    if not records:
        st.info("Nothing recorded yet.", icon=":material/history:")
        return
    st.dataframe(pd.DataFrame([{
        "When": r.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "Who": r.actor,
        "Action": r.action,
        "Target": r.target,
        "Outcome": r.outcome,
        "Details": json.dumps(r.details, ensure_ascii=False),
    } for r in records]), hide_index=True, width="stretch")
