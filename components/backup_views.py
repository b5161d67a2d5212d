"""Backups on the Settings page: the backup sets with their state and figures (operators),
making one now and the restore drill that checks one (admins and operators, in the
background), deleting one (admins). Restoring is done from the command line, into an empty
data directory. A failed scheduled backup is said on Home and Settings to operators."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import format as fmt
from components.feedback import flash, show_flashes
from components.resources import engine
from components.task_views import start_task, task_result


def scheduled_backup_warning() -> None:
    """One line for operators when the newest scheduled backup failed."""
    memsys_engine = engine()
    if memsys_engine.can("backups.schedule_problem"):
        problem = memsys_engine.backups.schedule_problem()
        if problem:
            st.warning(problem + " (see the Logs page; the next one is tried on schedule).", icon=":material/backup:")


def backups_panel() -> None:
    memsys_engine = engine()
    if not memsys_engine.can("backups.list"):
        return
    every, keep = memsys_engine.backups.schedule
    st.caption(f"Each backup holds the memories with their embeddings (Weaviate's own backup), the job history, the "
               f"audit trail, the saved settings and the spooled files. Kept in {memsys_engine.backups.directory}; "
               "restore one with `memsys backup restore NAME` into an empty data directory.")
    if every > 0:
        st.caption(f"The memsys server makes one every {every:g} hours and keeps the newest {keep} it made "
                   "(MEMSYS_BACKUP_EVERY_HOURS, MEMSYS_BACKUP_KEEP).")
    scheduled_backup_warning()
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
    if found and memsys_engine.can("backups.delete"):
        _delete_control([s.name for s in found])
    show_flashes()


def _delete_control(names: list[str]) -> None:
    """Admins: delete one backup, after ticking that they mean it."""
    pick, sure, go = st.columns([2, 2, 1], vertical_alignment="center")
    name = pick.selectbox("Backup to delete", names, key="backup_delete_name", label_visibility="collapsed")
    meant = sure.checkbox(f"Delete {name} for good", key="backup_delete_sure")
    if go.button("Delete", icon=":material/delete:", disabled=not meant, key="backup_delete"):
        try:
            engine().backups.delete(name)
        except ValueError as e:
            st.error(str(e)[:1].upper() + str(e)[1:] + ".")
        else:
            st.session_state.pop("backup_delete_sure", None)
            flash(f"Backup {name} deleted.")
            st.rerun()
