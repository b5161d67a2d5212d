"""Following a background task (components.resources.task_runner) from a page: live
progress while it runs, then one full rerun so the page can show the outcome."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from components.resources import task_runner
from memsys.ui.tasks import Progress, TaskStatus


def start_task(key: str, name: str, work: Callable[[Progress], Any]) -> None:
    """Run `work` in the background; the page follows it with `follow_task(key, ...)`."""
    st.session_state[key] = task_runner().submit(name, work)


def follow_task(key: str, label: str) -> TaskStatus | None:
    """The task's status once it has finished (until `forget_task`); while it runs, a
    progress bar that refreshes every second, and None."""
    task_id = st.session_state.get(key)
    status = task_runner().get(task_id) if task_id else None
    if status is None:
        return None
    if status.finished:
        return status
    _live(task_id, label)
    return None


def forget_task(key: str) -> None:
    st.session_state.pop(key, None)


@st.fragment(run_every=1)
def _live(task_id: str, label: str) -> None:
    status = task_runner().get(task_id)
    if status is None or status.finished:
        st.rerun()
    if status.total:
        st.progress(status.fraction, text=f"{label}: {status.done:,} of {status.total:,}")
    else:
        st.progress(0.0, text=f"{label}…")
