"""Knowledge bases: every knowledge base with its documents, memories and last import;
one opened to its documents, each with its status (queued, reading, embedding, ready,
failed with the reason, removed); a document opened to its memories in order, where an
operator can re-import or remove it."""
import streamlit as st

from components import format as fmt
from components.feedback import guarded, or_stop
from components.knowledge_views import describe_base, documents_section, knowledge_base_table, removal_outcome
from components.resources import engine

st.title("Knowledge bases")
st.caption("A knowledge base holds documents; each document is cut into memories that search finds.")
memsys_engine = or_stop(engine)
with guarded():
    bases = memsys_engine.knowledge.list()
    if not bases:
        st.info("No knowledge bases yet: import documents and choose New… to start one.", icon=":material/info:")
        st.page_link("pages/import.py", label="Import documents", icon=":material/upload_file:")
        st.stop()
    knowledge_base_table(bases)
    names = [b.name for b in bases]
    asked = st.query_params.get("kb")
    if "kb_open" not in st.session_state and asked in names:
        st.session_state["kb_open"] = asked
    name = st.selectbox("Open a knowledge base", names, key="kb_open")
    st.query_params["kb"] = name
    base = next(b for b in bases if b.name == name)

    st.header(fmt.plain(base.name), divider="gray")
    st.caption(describe_base(base))
    removal_outcome()
    documents_section(memsys_engine, base.name)
