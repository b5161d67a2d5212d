"""Memories on screen: filter fields, a selectable table, and one memory with its source."""
from __future__ import annotations

import io
import logging
import time
from typing import Sequence

import pandas as pd
import streamlit as st

from components.feedback import guarded, show_error
from components.resources import engine
from memsys.engine import DocumentSummary, MemoryFilter, StoredMemory, query_terms

from components import format as fmt
from components.snippets import snippet
from components.tables import memory_rows, preview, source_of


SEARCH_MODE_LABELS = {"hybrid": "meaning and keywords", "vector": "meaning only", "keyword": "keywords only"}
log = logging.getLogger("memsys.dashboard")


def how_matched(memory: StoredMemory) -> str:
    """"contains zirconium" or "similar in meaning, without the words": what a hit holds,
    from the words its text really contains (not from which of Weaviate's result sets it came)."""
    if memory.terms_found:
        return f"contains {fmt.and_list(list(memory.terms_found))}"
    return "similar in meaning, without the words" if memory.matched_by != "keyword" else "matched by keyword"


def filter_fields(key: str) -> tuple[str, str, str, str]:
    """Knowledge base, part, agent and tags in one row, each offering the values the stored
    memories hold (typing in one finds a value whatever its case); blank means "any"."""
    columns = st.columns(4)
    return (
        columns[0].selectbox("Knowledge base", ["", *existing_values("project")], key=f"{key}_project", format_func=_any),
        columns[1].selectbox("Part", ["", *existing_values("repo")], key=f"{key}_repo", format_func=_any),
        columns[2].selectbox("Agent", ["", *existing_values("agent")], key=f"{key}_agent", format_func=_any),
        ", ".join(columns[3].multiselect("Tags", existing_values("tags"), key=f"{key}_tags", placeholder="any")),
    )


def _any(value: str) -> str:
    return value or "any"


_VALUES, _VALUES_SECONDS = "existing_filter_values", 10.0


def existing_values(field: str) -> list[str]:
    """The values the stored memories hold in `field`, read at most every few seconds per
    session (a page draws several filters)."""
    cached: dict[str, tuple[float, list[str]]] = st.session_state.setdefault(_VALUES, {})
    now = time.monotonic()
    if field not in cached or now - cached[field][0] > _VALUES_SECONDS:
        try:
            cached[field] = (now, engine().knowledge.values(field))
        except Exception:  # the store is down: the filters offer nothing; the page says why elsewhere
            log.warning("the values of %s could not be read for the filters", field, exc_info=True)
            return []
    return cached[field][1]


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


def memory_card(memory: StoredMemory, query: str = "") -> None:
    """One search hit: its text around the query's words (marked), where it came from,
    how well it matches next to the best hit, and which words it contains."""
    with st.container(border=True):
        match = f"match {fmt.percent(memory.match)} · " if memory.match is not None else ""
        st.caption(fmt.plain(f"{match}{how_matched(memory)} · {source_of(memory)} · "
                             f"{memory.project} / {memory.repo} / {memory.agent}"
                             + (f" · tags {', '.join(memory.tags)}" if memory.tags else "")))
        st.markdown(snippet(memory.content, query) if query else fmt.plain(preview(memory.content, 400)))
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
            f"Document **{p(memory.source_file or '—')}**  \nWhere **{p(memory.source_location or '—')}**  \n"
            f"Chunk **{memory.chunk_index + 1}**"
        )
        right.markdown(
            f"Tags **{p(', '.join(memory.tags) or 'none')}**  \nSource **{p(memory.source)}**  \n"
            f"Created **{fmt.when(memory.created_at)}**"
        )
        st.caption(f"ID {memory.uuid}")


def document_list(may_delete: bool) -> None:
    """The stored documents with their memory counts and last import; with `may_delete`,
    one selected row can be deleted (its memories, and what the job database and spool
    keep of it) after a confirmation."""
    with guarded():
        documents = engine().memories.documents()
    if not documents:
        st.info("No documents yet: memories imported from files appear here, one row per file.")
        return
    event = st.dataframe(
        pd.DataFrame([_document_row(d) for d in documents]), hide_index=True, width="stretch",
        on_select="rerun", selection_mode="single-row", key="documents_table",
    )
    rows = event.selection.rows if event is not None else []
    outcome = st.session_state.pop("document_delete_outcome", None)
    if isinstance(outcome, BaseException):
        show_error(outcome)
    elif outcome is not None:
        st.success(f"Deleted {fmt.plural(outcome, 'memory', 'memories')}.", icon=":material/check:")
    if not may_delete:
        return
    if not rows or rows[0] >= len(documents):
        st.caption("Select a document to delete it.")
        return
    chosen = documents[rows[0]]
    sure = st.checkbox(f"Yes, delete {fmt.plain(chosen.source_file)} ({fmt.plural(chosen.memories, 'memory', 'memories')}) "
                       f"from {fmt.plain(chosen.project)} / {fmt.plain(chosen.repo)}", key=f"confirm_{chosen.document_id}")
    st.button("Delete this document", type="primary", icon=":material/delete:", disabled=not sure,
              on_click=_delete_document, args=(chosen,))


def _document_row(d: DocumentSummary) -> dict[str, object]:
    return {"Document": d.source_file, "Project": d.project, "Repo": d.repo, "Memories": d.memories,
            "Last import": fmt.when(d.last_imported_at) if d.last_imported_at else "—", "Job": d.last_job_id or "—"}


def _delete_document(document: DocumentSummary) -> None:
    where = MemoryFilter(project=document.project, repo=document.repo, source_file=document.source_file)
    try:
        st.session_state["document_delete_outcome"] = engine().memories.delete(where)
    except Exception as e:  # shown as a sentence by document_list
        st.session_state["document_delete_outcome"] = e


def cursor_page(where: MemoryFilter, page_size: int) -> tuple[list[StoredMemory], int]:
    """One page of memories, moved with Previous/Next (a cursor, so pages go on past
    Weaviate's 10,000-result cap); returns the page and its number (from 1). A new filter
    or page size starts again at page 1."""
    state = st.session_state
    key = (where, page_size)
    if state.get("browse_key") != key:
        state["browse_key"], state["browse_cursors"] = key, [None]
    cursors: list[str | None] = state["browse_cursors"]
    page = engine().memories.browse_page(where, after=cursors[-1], limit=page_size)
    left, right = st.columns(2)
    if left.button("Previous page", icon=":material/chevron_left:", disabled=len(cursors) == 1):
        cursors.pop()
        st.rerun()
    if right.button("Next page", icon=":material/chevron_right:", disabled=page.next_after is None):
        cursors.append(page.next_after)
        st.rerun()
    return page.memories, len(cursors)


def export_button(where: MemoryFilter) -> None:
    """Export the memories a filter matches as JSON lines, with their vectors if asked."""
    with_vectors = st.checkbox("Include vectors (restorable without embedding)", key="export_vectors")
    if st.button("Prepare an export", icon=":material/download:"):
        out = io.StringIO()
        with guarded():
            n = engine().memories.export(out, where, vectors=with_vectors)
            st.session_state["export"] = (n, out.getvalue().encode("utf-8"))
    prepared = st.session_state.get("export")
    if prepared:
        st.download_button(f"Download {fmt.plural(prepared[0], 'memory', 'memories')} (.jsonl)", prepared[1],
                           file_name="memories.jsonl", mime="application/jsonl")


def search_summary(hits: Sequence[StoredMemory], query: str, mode: str, limit: int) -> str:
    """One line above the hits that says plainly what was found: how many contain the
    query's words and how many are only similar in meaning."""
    terms = query_terms(query).all
    words = fmt.plain(fmt.and_list([f'"{t}"' for t in terms])) if terms else "the words"
    scale = "; match is next to the best hit (100%)" if hits else ""
    containing = sum(1 for h in hits if h.terms_found)
    if mode == "keyword":
        if not hits:
            return f"No memory contains {words}. Try other words or fewer filters."
        more = "; there may be more: raise Results" if len(hits) >= limit else "; no other memory does"
        return f"{fmt.plural(len(hits), 'memory contains', 'memories contain')} {words}{more}. Best match first{scale}."
    if not hits:
        return "Nothing matches. Try other words or fewer filters."
    found = f"{fmt.plural(len(hits), 'memory', 'memories')} found, best match first{scale}. "
    if containing == len(hits):
        return found + f"Each contains {words}."
    if not containing:
        return found + f"None contains {words}: they are similar in meaning."
    return found + (f"{containing:,} {'contains' if containing == 1 else 'contain'} {words}; the other "
                    f"{len(hits) - containing:,} {'is' if len(hits) - containing == 1 else 'are'} only similar in meaning.")
