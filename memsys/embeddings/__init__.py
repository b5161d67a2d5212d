"""Embeddings: providers, the persistent cache and the router in front of them."""
from memsys.embeddings.cache import EmbeddingCache
from memsys.embeddings.providers import EmbeddingProvider, LocalProvider, OpenAIProvider
from memsys.embeddings.router import EmbeddingResult, EmbeddingRouter

__all__ = ["EmbeddingCache", "EmbeddingProvider", "EmbeddingResult", "EmbeddingRouter", "LocalProvider", "OpenAIProvider"]
