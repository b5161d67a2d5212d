"""Inputs that keep their value when the user visits another page and comes back.
Streamlit forgets a widget's state once its page is left; a copy under another key
survives and seeds the widget on return."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

_KEPT = "_kept_inputs"


def kept(widget: Callable[..., Any], label: str, key: str, default: Any, **kwargs: Any) -> Any:
    """`widget(label, key=key, **kwargs)`, starting from its last value in this session."""
    memory = st.session_state.setdefault(_KEPT, {})
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, default)
    value = widget(label, key=key, **kwargs)
    memory[key] = value
    return value


def forget(*keys: str) -> None:
    """Drop kept values (the next visit starts from the defaults)."""
    memory = st.session_state.setdefault(_KEPT, {})
    for key in keys:
        memory.pop(key, None)
