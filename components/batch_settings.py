"""This session's batch settings, shared by the Batch settings and Import pages."""
from __future__ import annotations

from typing import Any

import streamlit as st

from components.batch_labels import FIELD_LABELS, labelled
from components.explain import sentence
from components.resources import engine
from memsys.config import UPPER_BOUNDS, BatchConfig, ConfigError

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


def bounded_number(column: Any, field: str, value: float, step: float, help: str | None = None, minimum: float = 0) -> Any:
    """A number field labelled as FIELD_LABELS names it, bounded as BatchConfig bounds it."""
    top = UPPER_BOUNDS.get(field)
    if isinstance(value, float):
        return column.number_input(FIELD_LABELS[field], value=value, step=float(step), min_value=float(minimum),
                                   max_value=float(top) if top is not None else None, help=help)
    return column.number_input(FIELD_LABELS[field], value=value, step=int(step), min_value=int(minimum),
                               max_value=int(top) if top is not None else None, help=help)
