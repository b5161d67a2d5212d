"""memsys: import documents into a Weaviate memory store through a cached embedding router.

    from memsys import write_memories_batch, search_memories

The names below load on first use (memsys.lazy): `import memsys` alone imports neither
the Weaviate nor the OpenAI client.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from memsys.lazy import lazy_exports

if TYPE_CHECKING:
    from memsys.api import (
        MemorySystem,
        WriteReport,
        count_memories,
        embed_text,
        embed_texts_batch,
        get_default_system,
        get_memory,
        search_memories,
        set_default_system,
        write_memories_batch,
        write_memory,
    )
    from memsys.config import BatchConfig, ConfigError, Settings
    from memsys.embeddings.router import EmbeddingRouter
    from memsys.errors import EmbeddingProviderError, MemoryWriteError
    from memsys.models import Memory, MemoryValidationError
    from memsys.store import MemoryFilter, StoredMemory

__getattr__, __dir__, _names = lazy_exports(__name__, globals(), {
    "memsys.api": (
        "MemorySystem", "WriteReport", "count_memories", "embed_text", "embed_texts_batch", "get_default_system",
        "get_memory", "search_memories", "set_default_system", "write_memories_batch", "write_memory",
    ),
    "memsys.config": ("BatchConfig", "ConfigError", "Settings"),
    "memsys.embeddings.router": ("EmbeddingRouter",),
    "memsys.errors": ("EmbeddingProviderError", "MemoryWriteError"),
    "memsys.models": ("Memory", "MemoryValidationError"),
    "memsys.store": ("MemoryFilter", "StoredMemory"),
})
__all__ = ["__version__", *_names]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memsys")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


__version__ = _version()
