"""This session's batch settings, shared by the Batch settings and Import pages."""
from __future__ import annotations

import streamlit as st

from components.feedback import show_error
from components.resources import engine
from memsys.config import BatchConfig, ConfigError

_KEY = "batch_config"


def batch_config() -> BatchConfig:
    """This session's batch settings: at first the saved ones (the data folder's
    batch_config.json), else BatchConfig's defaults."""
    if _KEY not in st.session_state:
        config = BatchConfig()
        try:
            config = engine().batch.saved()
        except ConfigError as e:
            show_error(e)
            st.warning("Using the default batch settings until the saved ones are fixed or saved again.")
        st.session_state[_KEY] = config
    return st.session_state[_KEY]


def use_batch_config(config: BatchConfig) -> None:
    st.session_state[_KEY] = config
