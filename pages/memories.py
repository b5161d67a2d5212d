"""Memories: search by meaning, browse page by page, open one with its source, list the
documents with their memory counts (delete one after a confirmation), and
delete the memories a filter matches after a typed confirmation."""
import pandas as pd
import streamlit as st

from components.feedback import guarded, show_error
from components.memory_views import (SEARCH_MODE_LABELS, cursor_page, document_list, existing_values,
                                     export_button, filter_fields,
                                     memory_card, memory_detail, memory_table, search_summary)
from components.resources import engine
from memsys.engine import SEARCH_MODES, MemoryFilter
from components import format as fmt
from components.fields import checked_memory_id, describe_filter, memory_filter
from components.tables import memory_rows

st.title("Memories")
st.caption("Find what has been imported, see where each memory came from, and remove what is no longer wanted.")


def delete_matching(target: MemoryFilter) -> None:
    """Runs before the page does (a button callback), so the confirmation box can be emptied."""
    st.session_state["delete_confirm"] = ""
    try:
        st.session_state["delete_outcome"] = engine().memories.delete(target)
    except Exception as e:  # shown as a sentence by the page below
        st.session_state["delete_outcome"] = e


may_delete = engine().can("memories.delete")  # admins only; the engine refuses anyone else anyway
tabs = st.tabs(["Search", "Browse", "Documents", "Delete"] if may_delete else ["Search", "Browse", "Documents"])
search_tab, browse_tab = tabs[0], tabs[1]

with search_tab:
    with st.form("search"):
        query = st.text_input("Search for", placeholder="what are you looking for?")
        project, repo, agent, tags = filter_fields("search")
        left, right = st.columns([3, 1])
        limit = left.slider("Results", min_value=1, max_value=100, value=10)
        mode = right.selectbox("Match by", SEARCH_MODES, format_func=SEARCH_MODE_LABELS.get,
                               help="Meaning and keywords together finds exact terms (a command, an error code) first.")
        searched = st.form_submit_button("Search", type="primary", icon=":material/search:")
    if searched:
        if not query.strip():
            st.warning("Type something to search for.")
        else:
            with guarded(), st.spinner("Searching…"):
                st.session_state.update(search_query=query, search_mode=mode, search_limit=limit)
                st.session_state["search_hits"] = engine().memories.search(
                    query, limit=limit, where=memory_filter(project, repo, agent, tags), mode=mode)
                st.session_state["search_unlike"] = "" if mode == "keyword" else engine().collections.needs_reembed()
    hits = st.session_state.get("search_hits")
    if unlike := st.session_state.get("search_unlike"):
        st.info(f"Matched by keywords only: {fmt.plain(unlike)}, and two models' vectors cannot be compared. "
                "Meaning counts again once the collection is re-embedded (Settings, Re-embed).",
                icon=":material/info:")
    if hits is not None:
        searched_for = st.session_state.get("search_query", "")
        st.caption(search_summary(hits, searched_for, st.session_state.get("search_mode", "hybrid"),
                                  st.session_state.get("search_limit", limit)))
        for hit in hits:
            memory_card(hit, searched_for)

with browse_tab:
    with guarded():
        left, right = st.columns([3, 1])
        with left.expander("Filters"):
            where = memory_filter(*filter_fields("browse"))
        page_size = right.selectbox("Per page", (10, 25, 50, 100), index=1)
        total = engine().memories.count(where)
        pages = max(1, -(-total // page_size))
        shown, page = cursor_page(where, page_size)
        st.caption(f"{fmt.plural(total, 'memory', 'memories')} ({describe_filter(where)}), in ID order; "
                   f"page {page} of {pages}.")
        if shown:
            memory_detail(memory_table(shown, key="browse_table"))
        with st.expander("Export"):
            export_button(where)

    with st.expander("Open a memory by its ID"):
        memory_id = st.text_input("Memory ID", placeholder="00000000-0000-0000-0000-000000000000")
        if memory_id.strip():
            with guarded():
                found = engine().memories.get(checked_memory_id(memory_id))
                if found is None:
                    st.warning("No memory has this ID.")
                else:
                    memory_detail(found)

with tabs[2]:
    document_list(may_delete)

if may_delete:
    with tabs[3]:
        st.markdown("Delete every memory that matches a filter. Name at least one field.")
        with st.form("delete_filter"):
            fields = filter_fields("delete")
            source = st.selectbox("Source", ["", *existing_values("source")], key="delete_source",
                                  format_func=lambda v: v or "any")
            st.form_submit_button("Find the memories to delete")
        target = memory_filter(*fields, source=source)
        if target.is_empty:
            st.caption("Fill in a field above to choose what to delete.")
        else:
            with guarded():
                matches = engine().memories.count(target)
                st.markdown(f"**{fmt.plural(matches, 'memory matches', 'memories match')}** {fmt.plain(describe_filter(target))}.")
                if matches:
                    st.dataframe(pd.DataFrame(memory_rows(engine().memories.browse(target, limit=5))),
                                 hide_index=True, width="stretch")
                    typed = st.text_input(f"Type DELETE to remove {fmt.plural(matches, 'memory', 'memories')} for good",
                                          key="delete_confirm")
                    st.button(
                        f"Delete {fmt.plural(matches, 'memory', 'memories')}", type="primary", icon=":material/delete:",
                        disabled=typed != "DELETE", on_click=delete_matching, args=(target,),
                    )
        outcome = st.session_state.pop("delete_outcome", None)
        if isinstance(outcome, BaseException):
            show_error(outcome)
        elif outcome is not None:
            st.success(f"Deleted {fmt.plural(outcome, 'memory', 'memories')}.", icon=":material/check:")
