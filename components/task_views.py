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
    st.session_state[key] = engine().tasks.start(name, work)


def task_result(key: str, label: str, cancellable: bool = False) -> Any | None:
    """The result of this session's latest task under `key`, once it has finished. While
    it runs: a progress bar that refreshes every second (with a Cancel button when
    `cancellable`). If it failed: the error, as a sentence; if it was cancelled, a line
    saying so. Either way None until there is a result to show."""
    task_id = st.session_state.get(key)
    status = engine().tasks.get(task_id) if task_id else None
    if status is None:
        return None
    if not status.finished:
        _live(task_id, label, cancellable)
        return None
    if status.cancelled:
        st.info(f"{label}: cancelled.", icon=":material/cancel:")
        return None
    if status.error is not None:
        show_error(status.error)
        return None
    return status.result


def cancel_task(key: str) -> None:
    """Stop this session's task under `key` if it is still running (its inputs changed)."""
    task_id = st.session_state.pop(key, None)
    if task_id:
        engine().tasks.cancel(task_id)


@st.fragment(run_every=1)
def _live(task_id: str, label: str, cancellable: bool) -> None:
    status = engine().tasks.get(task_id)
    if status is None or status.finished:
        st.rerun()
    if status.total:
        st.progress(status.fraction, text=f"{label}: {status.done:,} of {status.total:,}")
    else:
        st.progress(0.0, text=f"{label}…")
    if not cancellable:
        return
    if status.cancel_requested:
        st.caption("Stopping…")
    elif st.button("Cancel", key=f"cancel_task_{task_id}", icon=":material/stop:"):
        engine().tasks.cancel(task_id)
        st.rerun()  # the whole page: the fragment's own rerun is not allowed on a full run
