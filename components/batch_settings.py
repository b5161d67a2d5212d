"""This session's batch settings, shared by the Batch settings and Import pages."""
from __future__ import annotations

import streamlit as st

from components.feedback import show_error
from components.resources import current_settings
from memsys.config import BatchConfig, ConfigError
from memsys.ui.batch import default_config_path

_KEY = "batch_config"


def batch_config() -> BatchConfig:
    """The saved file if there is one (data folder/batch_config.json), else the defaults."""
    if _KEY not in st.session_state:
        path = default_config_path(current_settings())
        config = BatchConfig()
        if path.is_file():
            try:
                config = BatchConfig.from_file(path)
            except ConfigError as e:
                show_error(e)
                st.warning(f"Using the default batch settings until {path.name} is fixed or saved again.")
        st.session_state[_KEY] = config
    return st.session_state[_KEY]


def use_batch_config(config: BatchConfig) -> None:
    st.session_state[_KEY] = config
