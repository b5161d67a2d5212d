"""Settings: which embedder and which Weaviate this browser session uses. Changes last for
the session; API keys can be entered but are only ever shown as "set" or "not set". After
a change of embedding model, the stored memories are re-embedded from here."""
import pandas as pd
import streamlit as st

from components.feedback import guarded, show_error
from components.resources import current_settings, engine, session_overrides
from memsys.access import AccessDenied, Role
from memsys.config import PROVIDERS, ConfigError, redact_url
from components.reembed_views import reembed_panel
from components.token_views import api_tokens_panel
from components.backup_views import backups_panel
from components.session_settings import SECRET_FIELDS, describe, load_settings

st.title("Settings")
st.caption(
    "What memsys connects to. Values come from the environment and .streamlit/secrets.toml; "
    "changes made here apply to this browser session only."
)
overview = st.container()  # filled last, so it shows the settings after this run's changes
overrides = session_overrides()


def apply(changes: dict[str, str]) -> None:
    """Keep the changes for this session only if the settings they make can work, and only
    for an admin: these fields choose where the server sends requests."""
    try:
        engine().require(Role.ADMIN, "changing the connection settings")
    except AccessDenied as e:
        show_error(e)
        return
    for field in ("base_url", "weaviate_url"):
        if changes.get(field) and changes[field] == redact_url(overrides.get(field)):
            changes[field] = overrides[field]  # shown without its password, left as it was
    proposed = {k: v for k, v in {**overrides, **changes}.items() if v}
    changed = {k: v for k, v in changes.items() if v != overrides.get(k, "")}
    try:
        load_settings(proposed)
    except ConfigError as e:
        engine().audit.record_settings_change(changed, secret_fields=SECRET_FIELDS, refused=str(e))
        show_error(e)
        return
    engine().audit.record_settings_change(changed, secret_fields=SECRET_FIELDS)
    overrides.clear()
    overrides.update(proposed)
    st.success("Saved for this session.", icon=":material/check:")


st.subheader("Change for this session")
with st.form("connection"):
    left, right = st.columns(2)
    with left:
        st.markdown("**Embeddings**")
        chosen = overrides.get("provider", "")
        provider = st.selectbox(
            "Provider", ("",) + PROVIDERS, index=(("",) + PROVIDERS).index(chosen),
            format_func=lambda p: p or "as configured",
            help="local: the offline multilingual-e5-small model. openai: OpenAI or any compatible server.",
        )
        model = st.text_input("Model", value=overrides.get("model", ""), placeholder="the provider's default model")
        dimensions = st.text_input("Dimensions", value=overrides.get("dimensions", ""), placeholder="the model's own size")
        # A password inside a URL is a secret: the box shows the URL without it.
        base_url = st.text_input("Base URL", value=redact_url(overrides.get("base_url", "")) or "", placeholder="https://api.openai.com/v1",
                                 help="For an OpenAI-compatible server.")
    with right:
        st.markdown("**Weaviate**")
        weaviate_url = st.text_input("Weaviate URL", value=redact_url(overrides.get("weaviate_url", "")) or "",
                                     placeholder="empty: embedded Weaviate",
                                     help="A Weaviate server or a Weaviate Cloud cluster.")
        weaviate_grpc_port = st.text_input("gRPC port", value=overrides.get("weaviate_grpc_port", ""), placeholder="as configured",
                                           help="The server's gRPC port, when it is not 50051.")
        collection = st.text_input("Collection", value=overrides.get("collection", ""), placeholder="as configured")
    if st.form_submit_button("Apply to this session", type="primary"):
        apply({
            "provider": provider, "model": model, "dimensions": dimensions, "base_url": base_url,
            "weaviate_url": weaviate_url, "weaviate_grpc_port": weaviate_grpc_port, "collection": collection,
        })

st.subheader("API keys")
st.caption("A key entered here is kept for this session and never shown again.")
with st.form("keys", clear_on_submit=True):
    openai_key = st.text_input("OpenAI API key", type="password")
    weaviate_key = st.text_input("Weaviate API key", type="password")
    if st.form_submit_button("Save keys"):
        typed = {name: key for name, key in (("openai_api_key", openai_key), ("weaviate_api_key", weaviate_key)) if key}
        if typed:  # a box left empty keeps the key saved before
            apply(typed)
        else:
            st.info("Type a key first.")

left, right = st.columns(2)
if left.button("Check the connection", icon=":material/network_check:"):
    with guarded(), st.spinner("Connecting (embedded Weaviate takes about 15 seconds to start)…"):
        status = engine().status.check_connections()
        st.success(
            f"Weaviate {status.version} answers ({status.memories:,} memories in {status.collection}) and the "
            f"{engine().status.embedder().provider} embedder works."
        )
if right.button("Back to the configured settings", disabled=not overrides):
    engine().audit.record_settings_change({name: "" for name in overrides}, secret_fields=SECRET_FIELDS)
    overrides.clear()
    st.rerun()

st.subheader("Embedding model of the stored memories")
with guarded():
    reembed_panel()

st.subheader("API tokens")
with guarded():
    api_tokens_panel()

st.subheader("Backups")
with guarded():
    backups_panel()

with overview, guarded():
    rows = describe(current_settings(), overrides)
    st.table(pd.DataFrame([{"Setting": r.name, "Value": r.value, "From": r.source} for r in rows]).set_index("Setting"))
