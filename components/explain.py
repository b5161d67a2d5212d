"""Errors as plain sentences: what went wrong, what to do next, and the technical details
(scrubbed of secrets) for whoever has to look deeper. The dashboard never shows a raw
traceback; it shows `Explanation.sentence` and keeps `details` in an expander.
"""
from __future__ import annotations

import errno

import traceback
from dataclasses import dataclass
from typing import Iterable

from weaviate.exceptions import WeaviateBaseError

from memsys.config import ConfigError, Settings
from memsys.errors import (
    EmbeddingAuthError,
    EmbeddingBadRequestError,
    EmbeddingConnectionError,
    EmbeddingProviderError,
    EmbeddingRateLimitError,
    EmbeddingResponseError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    InputTooLongError,
    JobStoreError,
    MemoryWriteError,
    StoreUnavailableError,
    scrub,
)


@dataclass(frozen=True)
class Explanation:
    """An error told to a person: `sentence` says what happened and what to do next."""

    sentence: str
    details: str


def sentence(text: str) -> str:
    """Engine messages are lowercase clauses ("cannot connect to ..."); make them sentences.
    A message that starts with a setting's name ("min_batch_size (300) is ...") keeps its
    spelling, so it can be found in the file or form as written."""
    text = text.strip()
    if not text:
        return text
    if "_" not in text.split(" ", 1)[0]:
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _next_step(error: BaseException) -> str:
    if isinstance(error, EmbeddingAuthError):
        return "Enter a valid key on the Settings page, or set OPENAI_API_KEY, then try again."
    if isinstance(error, EmbeddingRateLimitError):
        return "Wait a minute and try again, or lower the batch sizes on Batch settings."
    if isinstance(error, (EmbeddingTimeoutError, EmbeddingConnectionError)):
        return "Check that the embedding service is running and that its base URL on the Settings page is right."
    if isinstance(error, EmbeddingServerError):
        return "The service had a problem of its own: try again in a few minutes."
    if isinstance(error, (EmbeddingBadRequestError, EmbeddingResponseError)):
        return "Check the model name and dimensions on the Settings page."
    if isinstance(error, EmbeddingProviderError):
        return "Check the embedding settings on the Settings page."
    if isinstance(error, StoreUnavailableError):
        return "Check the Weaviate connection on the Settings page; embedded Weaviate needs a free port and its data folder."
    if isinstance(error, ConfigError):
        return "Correct it on the Settings page or in .streamlit/secrets.toml."
    if isinstance(error, InputTooLongError):
        return "Import the file again: it will be split into smaller chunks."
    if isinstance(error, MemoryWriteError):
        return "Use \"Retry failed\" on the Import page once the cause is fixed."
    return ""


def explain(error: BaseException, secrets: Iterable[str] = ()) -> Explanation:
    """Turn any exception into a sentence with a next step; no secret survives in either part."""
    secrets = [s for s in secrets if s]
    if isinstance(error, WeaviateBaseError):
        what = "The memory store (Weaviate) could not answer"
        step = "Check the Weaviate connection on the Settings page and try again."
    elif isinstance(error, (EmbeddingProviderError, StoreUnavailableError, MemoryWriteError, JobStoreError, ValueError)):
        # memsys's own messages (ConfigError, validation errors and the like are ValueErrors)
        # already say what is wrong and name the item.
        what = str(error)
        step = _next_step(error)
    elif isinstance(error, KeyError):
        what = str(error.args[0]) if error.args else "something asked for is missing"
        step = ""
    elif isinstance(error, OSError) and error.errno == errno.EROFS:
        # A read-only data folder (a read-only volume, a disk the kernel remounted read-only).
        what = f"The data folder is read-only: memsys could not write {error.filename or 'a file it needs'}"
        step = "Make the data folder (MEMSYS_DATA_DIR) writable again; memsys carries on without a restart."
    elif isinstance(error, OSError) and error.errno == errno.ENOSPC:
        what = f"The disk is full: memsys could not write {error.filename or 'a file it needs'}"
        step = "Free some space on the disk of the data folder (MEMSYS_DATA_DIR); memsys carries on without a restart."
    elif isinstance(error, PermissionError):
        what = f"memsys is not allowed to use {error.filename or 'a file it needs'}"
        step = "Check the permissions of the data folder (MEMSYS_DATA_DIR)."
    elif isinstance(error, FileNotFoundError):
        what = f"The file {error.filename or ''} is missing".replace("  ", " ")
        step = "Upload it again, or check the path."
    elif isinstance(error, OSError):
        what = f"A file or connection failed: {error.strerror or error}"
        step = "Check free disk space and the data folder, then try again."
    else:
        what = f"Something unexpected went wrong ({type(error).__name__})"
        step = "Try again; if it keeps happening, send the details below to whoever runs memsys."
    text = sentence(scrub(what, secrets))
    if step:
        text = f"{text} {step}"
    details = scrub("".join(traceback.format_exception(type(error), error, error.__traceback__)), secrets)
    return Explanation(sentence=text, details=details)


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values a message must never contain: keys and passwords inside URLs."""
    return settings.secrets
