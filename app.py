"""memsys dashboard: `streamlit run app.py` (or `make run`). Navigation only; each page
lives in pages/ and composes the engine in memsys/."""
import streamlit as st

from components.feedback import guarded

st.set_page_config(page_title="memsys", page_icon=":material/neurology:", layout="wide")

navigation = st.navigation(
    {
        "Overview": [
            st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        ],
        "Memories": [
            st.Page("pages/import.py", title="Import", icon=":material/upload_file:"),
            st.Page("pages/memories.py", title="Memories", icon=":material/search:"),
        ],
        "Tuning": [
            st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
            st.Page("pages/cache.py", title="Cache", icon=":material/cached:"),
            st.Page("pages/batch_settings.py", title="Batch settings", icon=":material/tune:"),
            st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
        ],
    }
)
with guarded():
    navigation.run()
