"""API tokens on the Settings page, for admins: the tokens with their role, knowledge bases
and last use; making one (shown once, then never again: memsys keeps only its hash); and
revoking one. The API and the MCP server take them (`memsys api`, `memsys mcp`)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components.feedback import flash, guarded
from components.resources import engine

_NEW_TOKEN = "api_token_shown_once"


def api_tokens_panel() -> None:
    memsys_engine = engine()
    if not memsys_engine.can("tokens.list"):
        st.caption("Only an admin sees and makes API tokens.")
        return
    shown = st.session_state.pop(_NEW_TOKEN, None)
    if shown:
        st.success(f"The API token for {shown[0]}. Copy it now: it is shown only this once.")
        st.code(shown[1], language=None)
    tokens = memsys_engine.tokens.list()
    if tokens:
        st.dataframe(pd.DataFrame([{
            "Name": t.name, "Id": t.token_id, "Role": t.role,
            "Knowledge bases": ", ".join(t.projects) or "all",
            "Last used": t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never",
            "State": "revoked" if not t.active else "active"} for t in tokens]), hide_index=True, width="stretch")
    else:
        st.caption("No API tokens yet: until one exists, the API on 127.0.0.1 serves this machine's users as admin.")
    with st.form("new_api_token", clear_on_submit=True):
        left, middle, right = st.columns([2, 1, 2])
        name = left.text_input("Who uses it", placeholder="support agents")
        role = middle.selectbox("Role", ["viewer", "operator", "admin"],
                                help="viewer: search and read; operator: also write and import; admin: everything")
        projects = right.text_input("Knowledge bases (projects)", placeholder="empty: all",
                                    help="Comma-separated project names the token is limited to.")
        if st.form_submit_button("Make a token", icon=":material/key:"):
            with guarded():
                record, token = memsys_engine.tokens.create(name, role, [p for p in projects.split(",") if p.strip()])
                st.session_state[_NEW_TOKEN] = (record.name, token)
                st.rerun()
    active = [t for t in tokens if t.active]
    if active:
        left, right = st.columns([3, 1])
        chosen = left.selectbox("Revoke", active, format_func=lambda t: f"{t.name} ({t.token_id}, {t.role})",
                                label_visibility="collapsed")
        if right.button("Revoke", icon=":material/block:"):
            with guarded():
                revoked = memsys_engine.tokens.revoke(chosen.token_id)
                flash(f"API token {revoked.name} ({revoked.token_id}) revoked.")
                st.rerun()
