"""This session's batch settings, shared by the Batch settings and Import pages."""
from __future__ import annotations

from typing import Any

import streamlit as st

from components.batch_labels import FIELD_LABELS, labelled
from components.explain import sentence
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
            st.error(f"The saved batch settings cannot be used: {sentence(labelled(str(e)))}", icon=":material/error:")
            st.warning("Using the default batch settings until the saved ones are fixed or saved again "
                       "(Batch settings, Save for every new import).")
        st.session_state[_KEY] = config
    return st.session_state[_KEY]


def use_batch_config(config: BatchConfig) -> None:
    st.session_state[_KEY] = config


def setting_number(column: Any, field: str, value: float, step: float, help: str | None = None) -> Any:
    """A number field labelled as FIELD_LABELS names it. Its bounds are not given to
    Streamlit: a form with a field below its min_value refuses to submit without a word,
    so every problem would not be said at once; `batch_config_problems` names them all."""
    step = float(step) if isinstance(value, float) else int(step)
    return column.number_input(FIELD_LABELS[field], value=value, step=step, help=help)
