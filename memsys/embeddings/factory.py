"""The embedding provider the settings name: the local model, or the configured
OpenAI-compatible endpoints as one `EndpointPool` under one rate-limit budget. Settings
that cannot work raise ConfigError here, before any text is embedded.
"""
from __future__ import annotations

from memsys.config import LOCAL_DIMENSIONS, ConfigError, Settings
from memsys.embeddings.budget import RateBudget
from memsys.embeddings.endpoints import EndpointPool
from memsys.embeddings.providers import EmbeddingProvider, LocalProvider, OpenAIProvider


def provider_from_settings(settings: Settings) -> EmbeddingProvider:
    if settings.embedding_provider == "local":
        if settings.embedding_dimensions not in (None, LOCAL_DIMENSIONS):
            raise ConfigError(
                f"MEMSYS_EMBEDDING_DIMENSIONS is {settings.embedding_dimensions}, but the local model has {LOCAL_DIMENSIONS}"
            )
        return LocalProvider()
    key = settings.openai_api_key.get()
    urls = settings.embedding_endpoints
    if not key and not urls:
        raise ConfigError("OPENAI_API_KEY is not set: the openai provider needs it (or set OPENAI_BASE_URL to a server that needs no key)")
    # The key goes to the configured endpoints only: each is a client of its own.
    endpoints = [
        OpenAIProvider(
            model=settings.embedding_model,
            api_key=key,
            base_url=url,
            dimensions=settings.embedding_dimensions,
            timeout=settings.embedding_timeout,
        )
        for url in (urls or (None,))
    ]
    budget = RateBudget(settings.embedding_requests_per_minute, settings.embedding_tokens_per_minute)
    return EndpointPool(endpoints, budget=budget, concurrency=settings.embedding_concurrency)
