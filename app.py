"""memsys dashboard: `make run` (`python -m components.serve`). Navigation only: who may
use the dashboard (sign-in and roles), and which pages their role opens; each page lives
in pages/ and composes the engine's API."""
import streamlit as st

from components.feedback import guarded
from components.resources import current_user, served_openly, sign_in_configured
from memsys.access import Role

st.set_page_config(page_title="memsys", page_icon=":material/neurology:", layout="wide")

if served_openly() and not sign_in_configured():
    st.error(
        f"This dashboard is served on {st.get_option('server.address')}, so other machines can reach it, but "
        "sign-in is not configured. Add an [auth] section (an OpenID Connect provider) and the roles "
        "(MEMSYS_ADMINS, MEMSYS_OPERATORS, MEMSYS_VIEWERS) to .streamlit/secrets.toml, as "
        "secrets.toml.example shows, and the name people reach it by to MEMSYS_ALLOWED_HOSTS; or serve it on "
        "127.0.0.1 only (the default of `make run`).",
        icon=":material/lock:",
    )
    st.stop()

user = current_user()  # the sign-in page, or the refusal, ends the run here
with st.sidebar:
    if sign_in_configured():
        st.caption(f"Signed in as **{user.name}** ({user.role.label})")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:")
    else:
        st.caption("Local use on this machine, no sign-in (admin)")

# Each page with the least role that may open it: a role's navigation holds only its pages,
# so a page it may not open is not registered for it at all.
PAGES = {
    "Overview": [
        (Role.VIEWER, st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)),
    ],
    "Memories": [
        (Role.VIEWER, st.Page("pages/knowledge_bases.py", title="Knowledge bases", icon=":material/library_books:")),
        (Role.OPERATOR, st.Page("pages/import.py", title="Import", icon=":material/upload_file:")),
        (Role.VIEWER, st.Page("pages/imports.py", title="Imports", icon=":material/history:")),
        (Role.VIEWER, st.Page("pages/memories.py", title="Memories", icon=":material/search:")),
        (Role.VIEWER, st.Page("pages/sources.py", title="Sources", icon=":material/sync:")),
    ],
    "Tuning": [
        (Role.VIEWER, st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:")),
        (Role.VIEWER, st.Page("pages/cache.py", title="Cache", icon=":material/cached:")),
        (Role.ADMIN, st.Page("pages/logs.py", title="Logs", icon=":material/receipt_long:")),
        (Role.ADMIN, st.Page("pages/batch_settings.py", title="Batch settings", icon=":material/tune:")),
        (Role.ADMIN, st.Page("pages/settings.py", title="Settings", icon=":material/settings:")),
    ],
}
allowed = {
    section: [page for role, page in pages if user.can(role)]
    for section, pages in PAGES.items()
}
navigation = st.navigation({section: pages for section, pages in allowed.items() if pages})
with guarded():
    navigation.run()
