"""Backups on the Settings page: the backup sets with their state and figures (operators),
making one now and the restore drill that checks one (admins and operators, in the
background). Restoring is done from the command line, into an empty data directory."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import format as fmt
from components.resources import engine
from components.task_views import start_task, task_result


def backups_panel() -> None:
    memsys_engine = engine()
    if not memsys_engine.can("backups.list"):
        return
    st.caption(f"Each backup holds the memories with their embeddings (Weaviate's own backup), the job history, the "
               f"audit trail, the saved settings and the spooled files. Kept in {memsys_engine.backups.directory}; "
               "restore one with `memsys backup restore NAME` into an empty data directory.")
    found = memsys_engine.backups.list()
    if found:
        st.dataframe(pd.DataFrame([{
            "Backup": s.name, "Made": s.created.replace("T", " ")[:16], "State": s.state,
            "Memories": s.memories, "Imports": s.jobs, "Size": fmt.size(s.size_bytes),
            "Note": s.error if s.state != "complete" else "",
        } for s in found]), hide_index=True, width="stretch")
    else:
        st.caption("No backups yet.")
    make, check = st.columns(2)
    if memsys_engine.can("backups.create") and make.button("Make a backup now", icon=":material/backup:"):
        start_task("backup_create", "backup", lambda progress: memsys_engine.backups.create())
    made = task_result("backup_create", "Making the backup")
    if made is not None:
        st.success(f"Backup {made.name} made: {fmt.count(made.memories)} memories, {fmt.count(made.jobs)} imports, "
                   f"{fmt.size(made.size_bytes)}.", icon=":material/check:")
    complete = [s.name for s in found if s.state == "complete"]
    if complete and memsys_engine.can("backups.verify"):
        name = check.selectbox("Check a backup", complete, label_visibility="collapsed")
        if check.button("Check that it restores", icon=":material/fact_check:"):
            start_task("backup_verify", "backup-verify", lambda progress: memsys_engine.backups.verify(name))
    report = task_result("backup_verify", "Restoring it into a scratch data directory")
    if report is not None:
        verdict = report.verdict[:1].upper() + report.verdict[1:] + "."
        (st.success if report.ok else st.error)(verdict)
