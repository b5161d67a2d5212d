"""Exceptions memsys raises. Each names the item and the reason, carries what a caller
needs to recover (written UUIDs, failed records), and never contains a secret.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from memsys.lazy import caught_once_imported, late_base

# Anything shaped like an API key, in case a provider echoes one back.
_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9_\-\.]{6,})")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secrets and anything that looks like an API key from a message."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


class MemsysError(Exception):
    """Base class of memsys's own errors."""


@late_base("openai", "OpenAIError")
class EmbeddingProviderError(MemsysError):
    """The embedding provider failed. An `openai.OpenAIError` too, so code that catches the
    OpenAI client's errors catches it (the OpenAI client is imported when the first one is
    made, not with memsys: see memsys.lazy.late_base).

    `retryable` says whether trying again later can help; `retry_after` is the wait the
    provider asked for, in seconds, when it said so.
    """

    retryable = False
    kind = "provider_error"

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        # The answer's x-ratelimit-* headers only (what the rate-limit budget learns from).
        self.headers = headers or {}


class EmbeddingRateLimitError(EmbeddingProviderError):
    retryable = True
    kind = "rate_limit"


class EmbeddingTimeoutError(EmbeddingProviderError):
    retryable = True
    kind = "timeout"


class EmbeddingConnectionError(EmbeddingProviderError):
    retryable = True
    kind = "connection"


class EmbeddingServerError(EmbeddingProviderError):
    retryable = True
    kind = "server_error"


class EmbeddingAuthError(EmbeddingProviderError):
    kind = "auth"


class EmbeddingBadRequestError(EmbeddingProviderError):
    kind = "bad_request"


class EmbeddingModelMismatchError(EmbeddingProviderError):
    """Endpoints configured for one model answer with different vectors: another model
    (or another version) runs behind one of them under the same name."""

    kind = "model_mismatch"


class EmbeddingResponseError(EmbeddingProviderError):
    """The provider answered, but with vectors that cannot be right (count or size)."""

    kind = "bad_response"


class EmbedderMismatchError(MemsysError):
    """The collection holds vectors of another embedding model than the one configured:
    writing would mix two models' vectors, and search would quietly degrade."""


class InputTooLongError(ValueError, MemsysError):
    """A text has more tokens than the model accepts; memsys never truncates silently."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        self.index = index
        self.tokens = tokens
        self.limit = limit
        super().__init__(
            f"text #{index} has {tokens} tokens, more than the model's limit of {limit}; "
            "split it into smaller chunks"
        )


@dataclass(frozen=True)
class FailedMemory:
    """A memory that was not written, with the reason."""

    index: int
    uuid: str
    record: dict[str, Any]
    reason: str


class MemoryWriteError(MemsysError):
    """Some memories were not written. Nothing is dropped silently: `written` has the UUIDs
    that were stored, `failed` the records that were not, each with its reason."""

    def __init__(self, written: list[str], failed: list[FailedMemory]) -> None:
        self.written = written
        self.failed = failed
        first = failed[0] if failed else None
        detail = f"; first: memory #{first.index}: {first.reason}" if first else ""
        super().__init__(f"{len(failed)} of {len(written) + len(failed)} memories were not written{detail}")


class StoreUnavailableError(MemsysError):
    """Weaviate cannot be reached or started."""


# The Weaviate client's errors for an `except` clause, without importing the client (a
# command that never talks to Weaviate does not load it): `except weaviate_errors(OSError)`.
weaviate_errors = caught_once_imported("weaviate.exceptions", "WeaviateBaseError")


class JobStoreError(MemsysError):
    """The job database could not be read or written. `kind` says why: "locked" (another
    process held the write lock past the timeout), "disk_full", "read_only",
    "cannot_open" or "io". Nothing was half-written: the transaction was rolled back, and
    the same process carries on once the cause is gone (no restart)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ServerStoppedError(StoreUnavailableError):
    """The data directory's memsys server was stopped while an import was writing to it;
    the batch's items stay pending and a resume finishes the import."""
