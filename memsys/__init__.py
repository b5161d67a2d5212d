"""memsys: import documents into a Weaviate memory store through a cached embedding router.

    from memsys import write_memories_batch, search_memories
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memsys")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

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

__all__ = [
    "__version__", "BatchConfig", "ConfigError", "EmbeddingProviderError", "EmbeddingRouter", "Memory", "MemoryFilter",
    "MemorySystem", "MemoryValidationError", "MemoryWriteError", "Settings", "StoredMemory", "WriteReport",
    "count_memories", "embed_text", "embed_texts_batch", "get_default_system", "get_memory",
    "search_memories", "set_default_system", "write_memories_batch", "write_memory",
]
