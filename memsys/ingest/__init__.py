"""Documents and record streams in: readers (files, folders, zips -> text pieces), chunking
(token-aware, CJK-aware), `iter_memories` (paths -> validated memories, streamed) and the
seed's scenarios (knowledge base, conversations, multilingual queues, git commits).
"""
from memsys.ingest.chunking import Chunk, Chunker, ChunkSettings, chunk_text
from memsys.ingest.documents import MemoryDefaults, iter_memories, memories_from_source
from memsys.ingest.gitlog import (
    GitCommit,
    GitError,
    analyze_repository_commits,
    commit_type,
    group_commits_by_week,
    iter_commit_memories,
    read_git_commits,
)
from memsys.ingest.readers import (
    FieldMapping,
    InputProblem,
    ReadLimits,
    SourceText,
    UnsafeNameError,
    detect_encoding,
    is_safe_relative_name,
    read_sources,
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

__all__ = [
    "BatchesFailedError",
    "Chunk",
    "ChunkSettings",
    "Chunker",
    "Conversation",
    "ConversationProcessor",
    "Document",
    "FailedBatch",
    "FieldMapping",
    "GitCommit",
    "GitError",
    "InputProblem",
    "MemoryDefaults",
    "MultilingualProcessor",
    "ReadLimits",
    "SourceText",
    "UnsafeNameError",
    "analyze_repository_commits",
    "chunk_text",
    "commit_type",
    "detect_encoding",
    "detect_language",
    "group_commits_by_week",
    "import_knowledge_base",
    "is_safe_relative_name",
    "iter_commit_memories",
    "iter_memories",
    "memories_from_source",
    "read_git_commits",
    "read_sources",
    "spool_path",
]
