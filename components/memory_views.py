"""Memories on screen: filter fields, a selectable table, and one memory with its source."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from memsys.engine import StoredMemory
from components import format as fmt
from components.tables import memory_rows, preview, source_of


def filter_fields(key: str) -> tuple[str, str, str, str]:
    """Project, repo, agent and tags inputs in one row; blank means "any"."""
    columns = st.columns(4)
    return (
        columns[0].text_input("Project", key=f"{key}_project", placeholder="any"),
        columns[1].text_input("Repo", key=f"{key}_repo", placeholder="any"),
        columns[2].text_input("Agent", key=f"{key}_agent", placeholder="any"),
        columns[3].text_input("Tags", key=f"{key}_tags", placeholder="any; separate with commas"),
    )


def memory_table(memories: Sequence[StoredMemory], key: str) -> StoredMemory | None:
    """A table of memories; returns the one the user selected, if any."""
    event = st.dataframe(
        pd.DataFrame(memory_rows(memories)),
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=key,
        column_config={"ID": None},  # kept in the data, not worth a column
    )
    rows = event.selection.rows if event is not None else []
    return memories[rows[0]] if rows and rows[0] < len(memories) else None


def memory_card(memory: StoredMemory) -> None:
    """One search hit: its text, where it came from, and how well it matches."""
    with st.container(border=True):
        match = f"match {memory.score:.2f} · " if memory.score is not None else ""
        st.caption(fmt.plain(f"{match}{source_of(memory)} · {memory.project} / {memory.repo} / {memory.agent}"
                             + (f" · tags {', '.join(memory.tags)}" if memory.tags else "")))
        st.text(preview(memory.content, 400))
        with st.expander("Open"):
            memory_detail(memory, border=False)


def memory_detail(memory: StoredMemory | None, border: bool = True) -> None:
    if memory is None:
        return
    with st.container(border=border):
        p = fmt.plain  # imported text is shown as text: nothing in it renders as a link or an image
        st.markdown(f"**{p(source_of(memory))}**")
        st.text(memory.content)
        left, middle, right = st.columns(3)
        left.markdown(f"Project **{p(memory.project)}**  \nRepo **{p(memory.repo)}**  \nAgent **{p(memory.agent)}**")
        middle.markdown(
            f"File **{p(memory.source_file or '—')}**  \nWhere **{p(memory.source_location or '—')}**  \n"
            f"Chunk **{memory.chunk_index + 1}**"
        )
        right.markdown(
            f"Tags **{p(', '.join(memory.tags) or 'none')}**  \nSource **{p(memory.source)}**  \n"
            f"Created **{fmt.when(memory.created_at)}**"
        )
        st.caption(f"ID {memory.uuid}")
