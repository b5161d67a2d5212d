"""Documents and record streams in: readers (files, folders, zips -> text pieces), chunking
(token-aware, CJK-aware), memories (a piece of text -> validated memories), the reader
workers (each file read in a process of its own), `iter_memories` (paths -> validated
memories, streamed) and the scenarios (knowledge base, conversations, multilingual
queues, git commits).

The names below load on first use (memsys.lazy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from memsys.lazy import lazy_exports

if TYPE_CHECKING:
    from memsys.ingest.chunking import (
        Chunk,
        Chunker,
        ChunkSettings,
        chunk_text,
    )
    from memsys.ingest.files import iter_memories, read_sources
    from memsys.ingest.gitlog import (
        GitCommit,
        GitError,
        analyze_repository_commits,
        commit_type,
        group_commits_by_week,
        iter_commit_memories,
        read_git_commits,
    )
    from memsys.ingest.memories import MemoryDefaults, memories_from_source
    from memsys.ingest.readers import (
        FieldMapping,
        InputProblem,
        ReadLimits,
        SourceText,
        UnsafeNameError,
        detect_encoding,
        is_safe_relative_name,
        spool_path,
    )
    from memsys.ingest.scenarios import (
        BatchesFailedError,
        Conversation,
        ConversationProcessor,
        Document,
        FailedBatch,
        MultilingualProcessor,
        detect_language,
        import_knowledge_base,
    )

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "memsys.ingest.chunking": (
        "Chunk", "Chunker", "ChunkSettings", "chunk_text",
    ),
    "memsys.ingest.files": (
        "iter_memories", "read_sources",
    ),
    "memsys.ingest.gitlog": (
        "GitCommit", "GitError", "analyze_repository_commits", "commit_type", "group_commits_by_week",
        "iter_commit_memories", "read_git_commits",
    ),
    "memsys.ingest.memories": (
        "MemoryDefaults", "memories_from_source",
    ),
    "memsys.ingest.readers": (
        "FieldMapping", "InputProblem", "ReadLimits", "SourceText", "UnsafeNameError", "detect_encoding",
        "is_safe_relative_name", "spool_path",
    ),
    "memsys.ingest.scenarios": (
        "BatchesFailedError", "Conversation", "ConversationProcessor", "Document", "FailedBatch",
        "MultilingualProcessor", "detect_language", "import_knowledge_base",
    ),
})
