"""Following a background task (the engine's `start_task`) from a page: live progress
while it runs, then one full rerun so the page can show the outcome."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from components.feedback import show_error
from components.resources import engine
from memsys.engine import Progress


def start_task(key: str, name: str, work: Callable[[Progress], Any]) -> None:
    """Run `work` in the background; the page follows it with `task_result(key, ...)`."""
    st.session_state[key] = engine().start_task(name, work)


def task_result(key: str, label: str) -> Any | None:
    """The result of this session's latest task under `key`, once it has finished. While
    it runs: a progress bar that refreshes every second. If it failed: the error, as a
    sentence. Either way None until there is a result to show."""
    task_id = st.session_state.get(key)
    status = engine().task(task_id) if task_id else None
    if status is None:
        return None
    if not status.finished:
        _live(task_id, label)
        return None
    if status.error is not None:
        show_error(status.error)
        return None
    return status.result


@st.fragment(run_every=1)
def _live(task_id: str, label: str) -> None:
    status = engine().task(task_id)
    if status is None or status.finished:
        st.rerun()
    if status.total:
        st.progress(status.fraction, text=f"{label}: {status.done:,} of {status.total:,}")
    else:
        st.progress(0.0, text=f"{label}…")
