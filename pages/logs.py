"""Logs: memsys's own log lines (imports, retries, outages, cache work, dashboard errors),
filtered by level, component, job and time, followed live and downloaded; and the audit
trail of who did what. Read only: nothing here changes a line or a record."""
import streamlit as st

from components.feedback import guarded, or_stop
from components.log_views import audit_table, log_filters, log_lines
from components.resources import engine

st.title("Logs")
st.caption("What memsys did and why: every import's start, batches, retries and failures, cache checks and "
           "repairs. Secrets never appear here.")
memsys_engine = or_stop(engine)
lines_tab, audit_tab = st.tabs(["Log lines", "Audit trail"])
with lines_tab, guarded():
    query, follow = log_filters(memsys_engine.logs.components(), st.query_params.get("job", ""))
    log_lines(query, follow)
with audit_tab, guarded():
    audit_table(memsys_engine.audit.records(limit=1000))
