"""The process-wide resources behind every page, and this browser session's choices.

One Engine (memory system, job store, job runner) is built per process for each distinct
set of settings and shared by every session using those settings, so reruns, page
switches, several tabs and closed tabs never stop, duplicate or lose an import. An engine
for a session's own embedding settings reaches the same embedded Weaviate: the store
connects to one that is already running on its ports."""
from __future__ import annotations

import streamlit as st

from components.explain import settings_secrets
from components.session_settings import SECRET_FIELDS, fingerprint, load_settings
from memsys.config import ConfigError, Settings
from memsys.engine import Engine

OVERRIDES = "settings_overrides"


def session_overrides() -> dict[str, str]:
    """This session's changes to the settings (Settings page), field -> value."""
    return st.session_state.setdefault(OVERRIDES, {})


def current_settings() -> Settings:
    return load_settings(session_overrides())


def current_secrets() -> list[str]:
    """Secrets to scrub from anything shown; includes keys typed into this session."""
    typed = [v for k, v in session_overrides().items() if k in SECRET_FIELDS and v]
    try:
        loaded = settings_secrets(Settings.load())
    except ConfigError:
        loaded = []  # settings that do not load: the error names a setting, not a key
    return typed + loaded


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.close())
def _engine_for(key: str, _settings: Settings) -> Engine:
    return Engine.from_settings(_settings)


def engine() -> Engine:
    settings = current_settings()
    return _engine_for(fingerprint(settings), settings)
