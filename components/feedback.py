"""Errors on screen: a plain sentence with what to do next and a short reference; the
details (scrubbed of secrets) go to the log under that reference, never to the page."""
from __future__ import annotations

import logging
import secrets as secrets_module
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import streamlit as st

from components.resources import current_secrets
from components.explain import explain

log = logging.getLogger("memsys.dashboard")


def show_error(error: BaseException, secrets: list[str] | None = None) -> None:
    """The error as a sentence; its details (a traceback, server paths) go to the log file
    only, under a short reference the page shows, so whoever runs memsys can find them."""
    told = explain(error, secrets if secrets is not None else current_secrets())
    reference = secrets_module.token_hex(2)
    log.warning("dashboard error, reference %s: %s", reference, told.details)
    st.error(f"{told.sentence}\n\nReference {reference}: the details are in the log.", icon=":material/error:")


@contextmanager
def guarded() -> Iterator[None]:
    """Show an error from the block as a sentence; the rest of the page still renders.
    Streamlit's own control flow (st.rerun, st.stop) is not an Exception and passes."""
    try:
        yield
    except Exception as e:
        show_error(e)


_FLASH = "flash_messages"


def flash(message: str) -> None:
    """A success message that survives the st.rerun() that follows it."""
    st.session_state.setdefault(_FLASH, []).append(message)


def show_flashes() -> None:
    for message in st.session_state.pop(_FLASH, []):
        st.success(message, icon=":material/check:")


T = TypeVar("T")


def or_stop(load: Callable[[], T]) -> T:
    """What `load` returns; if it fails, the error as a sentence, and the page ends here."""
    try:
        return load()
    except Exception as e:
        show_error(e)
        st.stop()
        raise  # st.stop() does not return; this keeps type checkers and readers sure of it
